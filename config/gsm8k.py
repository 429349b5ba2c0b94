# The paper's GSM8k-Aug recipe: c=2 thoughts per step, K=3 stages of 3 epochs, from a CoT model.
# GSM8k-Aug (385k math word problems whose chains of thought are equations, from the iCoT
# paper, Deng et al. 2023) is not generated here and cannot be downloaded by this project.
# Get its text files (train.txt, valid.txt, test.txt: one "question||<<a*b=c>> <<c+d=e>> ## e"
# per line) from the iCoT release, then:
#   python tasks.py gsm8k path/to/gsm8k          # -> data/gsm8k/gsm8k_{train,valid,test}.json
#   python train.py config/gsm8k.py --method=cot --num_epochs=6 --out_dir=out-gsm8k-cot
#   python train.py config/gsm8k.py --init_from=out-gsm8k-cot/best.pt
#   python sample.py --out_dir=out-gsm8k --analyze=values   # do the thoughts hold the step results?
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
