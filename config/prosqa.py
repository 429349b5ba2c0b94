# The paper's ProsQA recipe: pretrained GPT-2 (124M), c=1, K=6 stages of 5 epochs, 50 epochs.
#   python train.py config/prosqa.py                                  # 1 GPU (accumulates to 128)
#   torchrun --standalone --nproc_per_node=4 train.py config/prosqa.py --gradient_accumulation_steps=1
# effective batch = batch_size 32 x gradient_accumulation_steps 4 x 1 GPU = 128 (paper: 32 x 4 GPUs)
out_dir = "out-prosqa"
task = "prosqa"  # generated on first use with the official statistics, 17,886 / 300 / 500
init_from = "gpt2"  # downloads model.safetensors once; or a local path to it
vocab = "gpt2"  # keep GPT-2's whole table, as the paper
method = "coconut"
c_thought = 1
max_latent_stage = 6
epochs_per_stage = 5
num_epochs = 50  # 6 stages x 5 epochs, then 20 more epochs at the last stage
pad_latent_to_max = True
uniform_prob = 0.0
reset_optimizer = True
batch_size = 32
gradient_accumulation_steps = 4
learning_rate = 1e-4  # constant, no warmup, no clipping, weight decay 0.01: as the paper
weight_decay = 0.01
eval_batch_size = 64
max_new_tokens = 96
