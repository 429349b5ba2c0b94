"""The paper's configs hold the official values: each of config/prosqa.py, prontoqa.py,
gsm8k_cot.py and gsm8k.py (with --method=cot for the CoT runs the official code makes from the
same file with `cot: True`) against a table copied from facebookresearch/coconut's args/*.yaml
and run.py. Any drift fails here, naming the setting and the file the value came from."""
import os

import pytest

from configurator import configure, train_defaults

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Read off the official repository (args/*.yaml; run.py for what the yamls do not set: HF
# GPT-2's dropout 0.1 in train mode, max_new_tokens 64 for GSM8k and 128 otherwise, AdamW with
# a constant rate and no clipping). "# need 4 gpus" x batch_size_training 32 x
# gradient_accumulation_steps 1 = 128 examples a step. reset_optimizer True rebuilds AdamW every
# epoch; resume N starts at epoch N; bf16 False is float32. None: the method does not read it.
COMMON = dict(init_from="gpt2", tokenizer="gpt2", dropout=0.1, learning_rate=1e-4, weight_decay=0.01,
              decay_lr=False, warmup_steps=0, grad_clip=0.0, pad_latent_to_max=True,
              uniform_prob=0.0, dtype="float32", start_epoch=0, effective_batch=128, batch_size=32)
OFFICIAL = {
    ("config/prosqa.py", "coconut"): ("args/prosqa_coconut.yaml", dict(
        task="prosqa", c_thought=1, max_latent_stage=6, epochs_per_stage=5, num_epochs=50,
        reset_optimizer="epoch", max_new_tokens=128)),
    ("config/prosqa.py", "cot"): ("args/prosqa_coconut.yaml with cot: True", dict(
        task="prosqa", num_epochs=50, reset_optimizer="epoch", max_new_tokens=128)),
    ("config/prontoqa.py", "coconut"): ("args/prontoqa_coconut.yaml", dict(
        task="prontoqa", c_thought=1, max_latent_stage=6, epochs_per_stage=5, num_epochs=50,
        reset_optimizer="epoch", max_new_tokens=128)),
    ("config/prontoqa.py", "cot"): ("args/prontoqa_coconut.yaml with cot: True", dict(
        task="prontoqa", num_epochs=50, reset_optimizer="epoch", max_new_tokens=128)),
    ("config/gsm8k_cot.py", "cot"): ("args/gsm_cot.yaml", dict(
        task="gsm8k", num_epochs=25, reset_optimizer="never", max_new_tokens=64)),
    ("config/gsm8k.py", "coconut"): ("args/gsm_coconut.yaml", dict(
        task="gsm8k", c_thought=2, max_latent_stage=3, epochs_per_stage=3, num_epochs=25,
        reset_optimizer="epoch", max_new_tokens=64, start_epoch=3,
        init_from="out-gsm8k-cot/best.pt")),  # load_model_path: the CoT run's checkpoint
}


@pytest.mark.parametrize("config, method", list(OFFICIAL))
def test_paper_configs_hold_the_official_values(config, method, monkeypatch):
    monkeypatch.chdir(ROOT)
    source, values = OFFICIAL[config, method]
    s = configure(train_defaults(), [config, f"--method={method}"])
    s["effective_batch"] = s["batch_size"] * s["gradient_accumulation_steps"]  # on 1 GPU
    drift = [f"{k}={s[k]!r}, official {v!r}" for k, v in {**COMMON, **values}.items() if s[k] != v]
    assert not drift, f"{config} --method={method} differs from {source}: {'; '.join(drift)}"


def test_gsm8k_coconut_starts_from_what_the_cot_step_writes(monkeypatch):
    monkeypatch.chdir(ROOT)
    cot = configure(train_defaults(), ["config/gsm8k_cot.py"])
    coconut = configure(train_defaults(), ["config/gsm8k.py"])
    assert coconut["init_from"] == f"{cot['out_dir']}/best.pt"
    assert coconut["start_epoch"] == coconut["epochs_per_stage"]  # stage 1: the CoT run was stage 0
