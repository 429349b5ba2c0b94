# The paper's ProntoQA recipe (5 hops, fictional ontology): the ProsQA recipe on other data.
#   python train.py config/prontoqa.py
# effective batch = batch_size 32 x gradient_accumulation_steps 4 x 1 GPU = 128 (paper: 32 x 4 GPUs)
out_dir = "out-prontoqa"
task = "prontoqa"  # generated on first use, 9,000 / 200 / 800
init_from = "gpt2"
vocab = "gpt2"
method = "coconut"
c_thought = 1
max_latent_stage = 6
epochs_per_stage = 5
num_epochs = 50
pad_latent_to_max = True
uniform_prob = 0.0
batch_size = 32
gradient_accumulation_steps = 4
learning_rate = 1e-4
weight_decay = 0.01
eval_batch_size = 64
max_new_tokens = 128  # ProntoQA's chains of thought are ~91 tokens
