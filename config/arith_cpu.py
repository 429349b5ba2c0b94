# Chained arithmetic in GSM8k-Aug's format, from scratch on a laptop CPU (2 cores): the task
# where a continuous thought has a value to carry ("Max has 10 cards. Max gives away 1. Max
# doubles them. How many cards does Max have?", steps <<10-1=9>> <<9*2=18>>, answer 18).
#   python train.py config/arith_cpu.py                                   # Coconut
#   python train.py config/arith_cpu.py --method=pause_as_thought --out_dir=out-arith-pat
#   python sample.py --out_dir=out-arith --analyze=values                # what each thought holds
out_dir = "out-arith"
task = "arith"
data_dir = "data/arith"
n_train = 20000
min_steps = 3  # 3-4 steps, every value in 0..30, all four operators
max_steps = 4
max_value = 30
ops = "+-*/"
vocab = "task"
# a 2-layer, 128-wide GPT-2 from scratch, as config/prosqa_cpu.py
init_from = "scratch"
n_layer = 2
n_head = 4
n_embd = 128
block_size = 128  # questions <= 45 tokens, 8 thoughts, answers with their steps <= 40
# the curriculum: stage k replaces the first k steps with 2k thoughts (c=2, K=4), as in the
# paper's GSM8k recipe: Coconut holds its accuracy with the second slot while a fixed <pause>
# loses some, so the gap between them is widest here (docs/experiments.md). A Coconut run
# takes 854.7-892.3 s on 2 cores.
c_thought = 2
max_latent_stage = 4
epochs_per_stage = 2
num_epochs = 12  # 5 stages x 2 epochs, then 2 more at the last stage
uniform_prob = 0.1
sort_chunk = 20
batch_size = 32
learning_rate = 2e-3
warmup_steps = 100
decay_lr = True
min_lr = 1e-4
weight_decay = 0.01
eval_batch_size = 300
max_new_tokens = 48
