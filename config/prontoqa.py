# The paper's ProntoQA recipe (5 hops, fictional ontology), as the official
# args/prontoqa_coconut.yaml: pretrained GPT-2 (124M), c=1, K=6 stages of 5 epochs, 50 epochs,
# AdamW lr 1e-4 constant, weight decay 0.01, a fresh AdamW every epoch, dropout 0.1 (HF GPT-2 in
# train mode), fp32, effective batch 128.
#   python train.py config/prontoqa.py                                # 1 GPU (accumulates to 128)
#   python train.py config/prontoqa.py --method=cot --out_dir=out-prontoqa-cot  # the CoT baseline
#   torchrun --standalone --nproc_per_node=4 train.py config/prontoqa.py --gradient_accumulation_steps=1
# effective batch = batch_size 32 x gradient_accumulation_steps 4 x 1 GPU = 128 (paper: 32 x 4 GPUs)
out_dir = "out-prontoqa"
task = "prontoqa"  # generated on first use, 9,000 / 200 / 800
init_from = "gpt2"  # downloads model.safetensors once; or a local path to it
tokenizer = "gpt2"  # keep GPT-2's whole table, as the paper
dropout = 0.1
method = "coconut"
c_thought = 1
max_latent_stage = 6
epochs_per_stage = 5
num_epochs = 50  # 6 stages x 5 epochs, then 20 more epochs at the last stage
pad_latent_to_max = True
uniform_prob = 0.0
reset_optimizer = "epoch"
batch_size = 32
gradient_accumulation_steps = 4
learning_rate = 1e-4  # constant, no warmup, no clipping
weight_decay = 0.01
dtype = "float32"  # the paper's precision; --dtype=bfloat16 is faster (bench.py)
eval_batch_size = 64
max_new_tokens = 128  # as the official run.py for every task but GSM8k
