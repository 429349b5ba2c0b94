# Step 2 of the arithmetic recipe, as the paper trains GSM8k: Coconut from the CoT run's model
# (step 1: config/arith_cot_cpu.py), starting at stage 1, since the CoT run was stage 0.
#   python train.py config/arith_cot_cpu.py                                # step 1: CoT
#   python train.py config/arith_cpu.py                                    # step 2: Coconut
#   python train.py config/arith_cpu.py --method=pause_as_thought --out_dir=out-arith-pat
#   python sample.py --out_dir=out-arith --analyze=values                # what each thought holds
out_dir = "out-arith"
init_from = "out-arith-cot/best.pt"  # the model, its size and vocabulary; the rest starts anew
start_epoch = 2  # = epochs_per_stage: stage 1, the CoT run was stage 0
task = "arith"
data_dir = "data/arith"
n_train = 20000
min_steps = 3  # the data of step 1
max_steps = 4
max_value = 30
ops = "+-*/"
tokenizer = "task"
block_size = 128
# the curriculum: stage k replaces the first k steps with 2k thoughts (c=2, K=4), as the
# paper's GSM8k recipe has two thoughts a step
c_thought = 2
max_latent_stage = 4
epochs_per_stage = 2
num_epochs = 24  # stages 1-4 x 2 epochs, then 14 more at the last stage: the slow seeds need
# them (docs/experiments.md, "every seed")
reset_optimizer = "stage"
uniform_prob = 0.1
sort_chunk = 20
batch_size = 32
learning_rate = 2e-3
warmup_steps = 100
decay_lr = True
min_lr = 1e-4
weight_decay = 0.01
grad_clip = 1.0  # the latent chain's gradient norm is 4-6 at the last stage: clipping tames its spikes
eval_batch_size = 300
max_new_tokens = 48
