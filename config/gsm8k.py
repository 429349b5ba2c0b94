# Step 2 of the paper's GSM8k recipe, as the official args/gsm_coconut.yaml: Coconut from the CoT
# run's model (step 1: config/gsm8k_cot.py) at stage 1, since that run was stage 0 (the official
# `resume: 3`). c=2 thoughts a step, K=3: the steps after the third stay in language.
#   python train.py config/gsm8k_cot.py      # step 1 -> out-gsm8k-cot/best.pt
#   python train.py config/gsm8k.py          # step 2
#   python sample.py --out_dir=out-gsm8k --analyze=values   # do the thoughts hold the step results?
out_dir = "out-gsm8k"
task = "gsm8k"
init_from = "out-gsm8k-cot/best.pt"  # the official README picks a CoT checkpoint near 40% validation
start_epoch = 3  # = epochs_per_stage: stage 1
tokenizer = "gpt2"
dropout = 0.1
method = "coconut"
c_thought = 2
max_latent_stage = 3
epochs_per_stage = 3
num_epochs = 25  # the official config (the paper reports 50)
pad_latent_to_max = True
uniform_prob = 0.0
reset_optimizer = "epoch"
batch_size = 32
gradient_accumulation_steps = 4  # effective batch 128 (paper: 32 x 4 GPUs)
learning_rate = 1e-4
weight_decay = 0.01
dtype = "float32"
eval_batch_size = 64
max_new_tokens = 64  # as the official run.py for GSM8k
