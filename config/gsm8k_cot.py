# Step 1 of the paper's GSM8k recipe, as the official args/gsm_cot.yaml: pretrained GPT-2 trained
# on GSM8k-Aug's chains of thought (CoT), the baseline and the model Coconut starts from (step 2:
# config/gsm8k.py). GSM8k-Aug (385k math word problems whose chains of thought are equations,
# from the iCoT paper, Deng et al. 2023) is not generated here and cannot be downloaded by this
# project. Get its text files (train.txt, valid.txt, test.txt: one "question||<<a*b=c>> <<c+d=e>>
# ## e" per line) from the iCoT release, then:
#   python -m tasks gsm8k path/to/gsm8k      # -> data/gsm8k/gsm8k_{train,valid,test}.json
#   python train.py config/gsm8k_cot.py      # step 1 -> out-gsm8k-cot/best.pt
#   python train.py config/gsm8k.py          # step 2: Coconut from it, at stage 1
out_dir = "out-gsm8k-cot"
task = "gsm8k"
init_from = "gpt2"
tokenizer = "gpt2"
dropout = 0.1
method = "cot"
num_epochs = 25
reset_optimizer = "never"
batch_size = 32
gradient_accumulation_steps = 4  # effective batch 128 (paper: 32 x 4 GPUs)
learning_rate = 1e-4
weight_decay = 0.01
dtype = "float32"
eval_batch_size = 64
max_new_tokens = 64  # as the official run.py for GSM8k
