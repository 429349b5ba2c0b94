# Coconut on a small ProsQA variant, from scratch, on a laptop CPU (2 cores, ~15 minutes):
#   python train.py config/prosqa_cpu.py                  # Coconut
#   python train.py config/prosqa_cpu.py --method=cot --out_dir=out-cot
# Graphs of 8 generated nodes with 2-3 hop answers (85% / 15%), ~71-token questions.
task = "prosqa"
data_dir = "data/prosqa_small"
n_train = 40000
n_nodes = 8
min_hops = 2
max_hops = 3
vocab = "task"  # ~100 GPT-2 tokens instead of 50,257: a 128-row embedding table
# a 2-layer, 128-wide GPT-2 from scratch (0.48M parameters)
init_from = "scratch"
n_layer = 2
n_head = 4
n_embd = 128
block_size = 256
# the curriculum: stage 0 is CoT, stage k replaces k steps with k thoughts (c=1, K=3)
max_latent_stage = 3
epochs_per_stage = 2
num_epochs = 12
uniform_prob = 0.1
# AdamW, larger steps than the paper's 1e-4 (a small model from scratch), warmup after resets
batch_size = 32
learning_rate = 2e-3
warmup_steps = 100
weight_decay = 0.01
n_val = 300
