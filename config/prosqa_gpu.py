# Full-size ProsQA (the generator's defaults, the paper's 17,886 / 300 / 500 split) from
# scratch on one GPU in about 10 minutes: a 2-layer, 768-wide GPT-2, as in from-scratch
# follow-up work (width matters more than depth). reproduce.sh runs it with Coconut and CoT.
#   python train.py config/prosqa_gpu.py
#   python train.py config/prosqa_gpu.py --method=cot --out_dir=out-prosqa-gpu-cot
out_dir = "out-prosqa-gpu"
task = "prosqa"
init_from = "scratch"
tokenizer = "task"
n_layer = 2
n_head = 12
n_embd = 768
block_size = 768  # longest question ~570 tokens + 8 thought slots + up to 96 new tokens
method = "coconut"
c_thought = 1
max_latent_stage = 6
epochs_per_stage = 2
num_epochs = 24  # 6 stages x 2 epochs, then 12 at the last stage
pad_latent_to_max = True
sort_chunk = 20  # batch questions of similar length: less padding
uniform_prob = 0.1
reset_optimizer = "stage"  # a fresh AdamW at each stage change (the official run.py: every epoch)
batch_size = 128
learning_rate = 5e-4
warmup_steps = 100
decay_lr = True
min_lr = 5e-5
eval_batch_size = 150
max_new_tokens = 96
compile = False  # the curriculum changes shapes every stage; eager is fast enough here
