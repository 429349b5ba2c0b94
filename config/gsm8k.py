# The paper's GSM8k-Aug recipe: c=2 thoughts per step, K=3 stages of 3 epochs, from a CoT model.
# GSM8k-Aug is not generated here. Convert it with the official Coconut repository's
# preprocessing script, rename gsm_{train,valid,test}.json to gsm8k_{...}.json, put them in
# data/gsm8k/, then:
#   python train.py config/gsm8k.py --method=cot --num_epochs=6 --out_dir=out-gsm8k-cot
#   python train.py config/gsm8k.py --init_from=out-gsm8k-cot/best.pt
# effective batch = batch_size 32 x gradient_accumulation_steps 4 x 1 GPU = 128
out_dir = "out-gsm8k"
task = "gsm8k"
init_from = "gpt2"
vocab = "gpt2"
method = "coconut"
c_thought = 2
max_latent_stage = 3
epochs_per_stage = 3
num_epochs = 25  # the official config (the paper reports 50)
pad_latent_to_max = True  # as the official args/gsm_coconut.yaml: every example gets K*c thoughts at the last stage
uniform_prob = 0.0
batch_size = 32
gradient_accumulation_steps = 4
learning_rate = 1e-4
weight_decay = 0.01
eval_batch_size = 64
max_new_tokens = 128
