# Step 1 of the arithmetic recipe, as the paper trains GSM8k: a CoT run, which is both the CoT
# baseline and the model Coconut starts from (step 2: config/arith_cpu.py). Chained arithmetic in
# GSM8k-Aug's format ("Max has 10 cards. Max gives away 1. Max doubles them. How many cards does
# Max have?", steps <<10-1=9>> <<9*2=18>>, answer 18), from scratch on a laptop CPU (2 cores).
#   python train.py config/arith_cot_cpu.py             # -> out-arith-cot/best.pt
#   python train.py config/arith_cpu.py                 # Coconut from it, at stage 1
out_dir = "out-arith-cot"
task = "arith"
data_dir = "data/arith"
n_train = 20000
min_steps = 3  # 3-4 steps, every value in 0..30, all four operators
max_steps = 4
max_value = 30
ops = "+-*/"
tokenizer = "task"
# a 2-layer, 128-wide GPT-2 from scratch, as config/prosqa_cpu.py
init_from = "scratch"
n_layer = 2
n_head = 4
n_embd = 128
block_size = 128  # questions <= 45 tokens, 8 thoughts, answers with their steps <= 40
method = "cot"
num_epochs = 8
reset_optimizer = "never"  # as the official args/gsm_cot.yaml
sort_chunk = 20
batch_size = 32
learning_rate = 2e-3
warmup_steps = 100
decay_lr = True
min_lr = 1e-4
weight_decay = 0.01
eval_batch_size = 300
max_new_tokens = 48
