# Coconut on a small ProsQA variant, from scratch, on a laptop CPU (2 cores; README: how long):
#   python train.py config/prosqa_cpu.py                  # Coconut
#   python train.py config/prosqa_cpu.py --method=cot --out_dir=out-cot
# Graphs of 8 generated nodes with 2-3 hop answers (85% / 15%), ~71-token questions.
task = "prosqa"
data_dir = "data/prosqa_small"
n_train = 28000  # 875 steps of 32 per epoch
n_nodes = 8
min_hops = 2
max_hops = 3
tokenizer = "task"  # ~100 GPT-2 tokens instead of 50,257: a 128-row embedding table (whole
# words, tokenizer="words", are 1.4-1.8x faster but less accurate here: docs/performance.md)
# a 2-layer, 128-wide GPT-2 from scratch (0.41M parameters without the position table)
init_from = "scratch"
n_layer = 2
n_head = 4
n_embd = 128
block_size = 256
# the curriculum: stage 0 is CoT, stage k replaces k steps with k thoughts (c=1, K=3);
# two epochs per stage, then two more at the last stage: 10 epochs
max_latent_stage = 3
epochs_per_stage = 2
num_epochs = 10
uniform_prob = 0.1  # 10% of examples at a random stage: earlier stages are not forgotten
reset_optimizer = "stage"  # a fresh AdamW at each stage change (the official run.py: every epoch)
sort_chunk = 20  # batch questions of similar length: less padding (docs/performance.md)
# AdamW with larger steps than the paper's 1e-4 (a small model from scratch), warmup after
# each optimizer reset, cosine decay over the run
batch_size = 32
learning_rate = 2e-3
warmup_steps = 100
decay_lr = True
min_lr = 1e-4
weight_decay = 0.01
eval_batch_size = 300
max_new_tokens = 48  # the longest chain of thought and answer is 45 tokens
