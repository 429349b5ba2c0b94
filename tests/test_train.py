"""train.py end to end on tiny settings: the curriculum lowers the loss, checkpoints resume
exactly, eval_only evaluates any file, pretrained GPT-2 weights load, bad settings fail early."""
import json
import os
import subprocess
import sys

import math
import re
import runpy
import shutil
from collections import Counter

import pytest
import torch

import checkpoint
import data
import sample
import tasks
from files import load_records
from weights import write_safetensors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--n_train=256", "--n_nodes=8", "--min_hops=2", "--max_hops=3", "--max_latent_stage=2",
        "--epochs_per_stage=1", "--n_layer=1", "--n_head=2", "--n_embd=32", "--batch_size=32",
        "--learning_rate=3e-3", "--n_val=32", "--eval_batch_size=32", "--max_new_tokens=40",
        "--block_size=256", "--sort_chunk=3"]


def tiny(args):
    """TINY, but for a run of another task without ProsQA's knobs (another task's knob is refused)."""
    other = any(a.startswith("--task=") and a != "--task=prosqa" for a in args)
    return [a for a in TINY if not (other and a.split("=")[0] in ("--n_nodes", "--min_hops", "--max_hops"))]


def train(*args, check=True):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "train.py", *tiny(args), *args], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(p.stdout[-3000:] + p.stderr[-3000:])
    return p


KILLED_AT = """
import os, runpy, sys, coconut
step, real = [0], coconut.forward_backward
def forward_backward(*args, **kwargs):  # SIGKILL before training step number {step}: a real kill
    step[0] += 1
    if step[0] == {step}:
        os.kill(os.getpid(), 9)
    return real(*args, **kwargs)
coconut.forward_backward = forward_backward
sys.argv = ["train.py", *{args!r}]
runpy.run_path("train.py", run_name="__main__")
"""


def train_killed(step, *args):
    """train.py killed (SIGKILL) just before its training step number `step` (1-based)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    code = KILLED_AT.format(step=step, args=[*tiny(args), *args])
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == -9, p.stderr[-3000:]


def train_here(monkeypatch, *args):
    """train.py in this process (no interpreter start-up): for runs that stop early with a
    SystemExit, which propagates."""
    monkeypatch.setattr(sys, "argv", ["train.py", *tiny(args), *args])
    monkeypatch.chdir(ROOT)
    runpy.run_path(os.path.join(ROOT, "train.py"), run_name="__main__")


def read_log(out):
    with open(os.path.join(out, "log.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    tasks.ensure_splits("prosqa", str(d), n_train=256, seed=0, n_nodes=8, min_hops=2, max_hops=3)
    return str(d)


def test_two_stages_lower_loss_and_resume_exactly(data_dir, tmp_path):
    full, part = str(tmp_path / "full"), str(tmp_path / "part")
    train(f"--data_dir={data_dir}", f"--out_dir={full}", "--num_epochs=4", "--epochs_per_stage=2")
    log = read_log(full)
    assert [r["stage"] for r in log] == [0, 0, 1, 1]
    # within a stage the labels are the same, so the losses compare
    assert log[1]["train_loss"] < log[0]["train_loss"] and log[3]["train_loss"] < log[2]["train_loss"]
    assert log[3]["val_loss"] < log[2]["val_loss"]
    # best.pt holds the epoch of the best validation accuracy (the first, on a tie) among the
    # epochs of the last stage the run reaches (stage 1: epochs 3 and 4), and the log says so
    accs = [r["val_acc"] for r in log[2:]]
    best = torch.load(os.path.join(full, "best.pt"), weights_only=True)
    # the rows that pad the embedding table are never predicted (model.logits): a model from
    # scratch knows which rows are its vocabulary's
    assert best["model_args"]["n_tokens"] == len(best["vocab"]) < best["model_args"]["vocab_size"]
    assert best["epoch"] == 3 + accs.index(max(accs)) and best["stage"] == 1
    assert [r["best"] for r in log] == [False, False, True, accs[1] > accs[0]]
    assert torch.load(os.path.join(full, "ckpt.pt"), weights_only=True)["epoch"] == 4
    assert not [f for f in os.listdir(full) if f.endswith(".tmp")]  # nothing half-written
    # a run killed in epoch 4 (8 steps an epoch, after epoch 3's checkpoint, mid-stage) resumes
    # with exactly the same losses
    train_killed(3 * 8 + 2, f"--data_dir={data_dir}", f"--out_dir={part}", "--num_epochs=4", "--epochs_per_stage=2")
    assert torch.load(os.path.join(part, "ckpt.pt"), weights_only=True)["epoch"] == 3
    with open(os.path.join(part, "log.jsonl"), "a") as f:  # as if killed after logging epoch 4
        f.write(json.dumps(dict(read_log(part)[-1], epoch=4)) + "\n")  # but before its checkpoint
    p = train(f"--data_dir={data_dir}", f"--out_dir={part}", "--num_epochs=4", "--epochs_per_stage=2", "--seed=1",
              "--init_from=resume", check=False)
    assert p.returncode != 0 and "seed=0 (flags: 1)" in p.stderr  # another run's settings: refused
    p = train(f"--data_dir={data_dir}", f"--out_dir={part}", "--num_epochs=6", "--epochs_per_stage=2",
              "--init_from=resume", check=False)  # a longer run is a new run from the checkpoint
    assert p.returncode != 0 and f"--init_from={part}/ckpt.pt --start_epoch=3 --num_epochs=N" in p.stderr
    train(f"--data_dir={data_dir}", f"--out_dir={part}", "--num_epochs=4", "--epochs_per_stage=2",
          "--init_from=resume")
    resumed = read_log(part)
    assert len(resumed) == len(log) == 4
    for a, b in zip(log, resumed):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6)
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-6)

    # eval_only on any file in the official format, with any number of thoughts. The answers
    # of questions 0, 2, 4 are set to what the model generates (sample.py's way of reading
    # them), the others to a wrong answer: the accuracy must be exactly 3/5
    records = load_records(os.path.join(data_dir, "prosqa_test.json"))[:5]
    model, vocab, cfg = sample.load(checkpoint.find_checkpoint(full), "cpu")
    for k in (-1, 0, 4):
        results = sample.run(model, vocab, records, cfg, n_latent=k, max_new_tokens=40)
        planted = [dict(question=r["question"], steps=r["steps"],
                        answer=res["answer"] if i % 2 == 0 else "Nobody is a wrongpus.")
                   for i, (r, res) in enumerate(zip(records, results))]
        path = tmp_path / f"five_{k}.json"
        path.write_text(json.dumps(planted))
        p = train("--eval_only=True", f"--out_dir={full}", f"--val_data={path}", f"--n_latent={k}")
        result = json.loads(p.stdout.strip().splitlines()[-1])
        assert result["n"] == 5 and result["val_acc"] == pytest.approx(3 / 5)
        assert result["mean_tokens"] == pytest.approx(sum(r["n_tokens"] for r in results) / 5)
        assert result["cot_em"] is None  # at the last stage no step is left in language

    # a checkpoint whose model does not match the config is refused before training
    p = train(f"--data_dir={data_dir}", f"--out_dir={full}", "--init_from=resume", "--n_embd=64",
              "--num_epochs=4", check=False)
    assert p.returncode != 0 and "n_embd=32 (flags: 64)" in p.stderr
    # a fresh run in a used out_dir is refused, and replaces it only when asked to
    p = train(f"--data_dir={data_dir}", f"--out_dir={full}", "--num_epochs=1", check=False)
    assert p.returncode != 0 and "--init_from=resume" in p.stderr and "--overwrite=True" in p.stderr
    assert len(read_log(full)) == 4
    train(f"--data_dir={data_dir}", f"--out_dir={full}", "--num_epochs=1", "--overwrite=True")
    assert len(read_log(full)) == 1 and torch.load(os.path.join(full, "ckpt.pt"), weights_only=True)["epoch"] == 1


@pytest.mark.parametrize("args,message", [
    (["--method=cocnut"], "unknown method"),
    (["--max_latent_stage=-1"], "max_latent_stage"),
    (["--sort_chunk=-1"], "sort_chunk=-1 must be >= 0"),
    (["--block_size=64"], "block_size=64"),
    (["--learning_rte=1e-3"], "learning_rate"),
    (["--batch_size=1.5"], "batch_size must be a int"),
    (["--init_from=/nonexistent/ckpt.pt"], "no checkpoint"),
    (["--n_embd=31"], "n_embd=31 must be a multiple of n_head=2"),
    (["--dtype=float33"], "dtype='float33': choose"),
    (["--out_dir="], "out_dir is empty"),
    (["--seed=99999999999999999999"], "seed=99999999999999999999 must be below"),
    (["--seed=-1"], "seed=-1 must be >= 0"),
    (["--n_layer=0"], "n_layer=0 must be >= 1"),
    (["--learning_rate=1e999"], "learning_rate=inf must be in"),
    (["--max_new_tokens=0"], "max_new_tokens=0 must be >= 1"),
    (["--task=prontoqa", "--hops=0"], "task prontoqa: hops=0: need hops >= 1"),
    (["--task=arith", "--max_value=2"], "max_value=2, ops='+-*/': need max_value >= 3"),
    (["--mean_parents=0"], "task prosqa: mean_parents=0.0: must be in [0.1, 10]"),
    (["--task=arith", "--hops=3"], "hops=3: not a knob of task 'arith', whose knobs are min_steps, max_steps"),
    (["--n_val=0"], "n_val=0: give the number of validation examples scored each epoch (>= 1), or -1"),
    (["--dtype=float16"], "dtype='float16' would train without loss scaling"),
    (["--eval_out=/tmp/x.json"], "eval_out='/tmp/x.json': the per-question results are written by --eval_only=True"),
    (["--eval_only=True", "--init_from=gpt2"], "eval_only of init_from='gpt2' (GPT-2's weights, untrained here)"),
    (["--n_latent=300"], "positions, more than the context block_size=256"),  # 300 thoughts
    (["--init_from=/nonexistent/model.safetensors"], "init_from='/nonexistent/model.safetensors': no GPT-2 weights"),
    (["--start_epoch=5", "--num_epochs=5"], "start_epoch=5 leaves nothing to train: it must be below num_epochs=5"),
    (["--reset_optimizer=True"], "reset_optimizer='True': choose one of 'epoch', 'stage', 'never'"),  # was a bool
    (["--reset_optimizer=sometimes"], "reset_optimizer='sometimes': choose one of 'epoch', 'stage', 'never'"),
    (["--tokenizer=words", "--init_from=gpt2"], "tokenizer='words' is for models trained from scratch"),
])
def test_bad_settings_fail_early(data_dir, tmp_path, monkeypatch, args, message):
    out = [] if any(a.startswith("--out_dir") for a in args) else [f"--out_dir={tmp_path}"]
    with pytest.raises(SystemExit, match=re.escape(message)):
        train_here(monkeypatch, f"--data_dir={data_dir}", *out, *args)
    assert not os.path.exists(os.path.join(tmp_path, "log.jsonl"))


@pytest.mark.parametrize("method", ["cot", "no_cot", "pause_token", "no_thoughts",
                                    "pause_as_thought", "no_curriculum"])
def test_every_method_trains(data_dir, tmp_path, method):
    """Two epochs, the second at stage 1 for the methods with a curriculum (where their layouts
    differ from CoT's and Coconut's); the checkpoint records the method."""
    epochs = 1 if method in ("cot", "no_cot") else 2  # these two never leave stage 0
    train(f"--data_dir={data_dir}", f"--out_dir={tmp_path}", f"--num_epochs={epochs}", f"--method={method}")
    log = read_log(str(tmp_path))
    assert [r["stage"] for r in log] == list(range(epochs))
    assert all(math.isfinite(r["train_loss"]) and math.isfinite(r["val_loss"]) for r in log)
    assert torch.load(tmp_path / "ckpt.pt", weights_only=True)["config"]["method"] == method
    if method == "cot":  # CoT match: the steps of questions 0 and 2 planted from the model's own
        records = load_records(os.path.join(data_dir, "prosqa_test.json"))[:5]
        model, vocab, cfg = sample.load(checkpoint.find_checkpoint(str(tmp_path)), "cpu")
        results = sample.run(model, vocab, records, cfg, max_new_tokens=40)
        planted = [dict(r, steps=res["text"].split("#")[0].strip().split("\n") if i in (0, 2) else ["No."])
                   for i, (r, res) in enumerate(zip(records, results))]
        path = tmp_path / "planted.json"
        path.write_text(json.dumps(planted))
        p = train("--eval_only=True", f"--out_dir={tmp_path}", f"--val_data={path}")
        assert json.loads(p.stdout.strip().splitlines()[-1])["cot_em"] == pytest.approx(2 / 5)


@pytest.mark.parametrize("reset, since_reset", [("epoch", [7, 7, 7]), ("stage", [7, 15, 7]),
                                                ("never", [7, 15, 23])])
def test_learning_rate_schedule(data_dir, tmp_path, reset, since_reset):
    """Cosine decay over the run and linear warmup after every optimizer reset: the rate of
    each epoch's last step (8 steps an epoch, 24 in all; stages 0, 0, 1), computed here by hand
    for a fresh AdamW every epoch (the official run.py), at the stage change, or never."""
    train(f"--data_dir={data_dir}", f"--out_dir={tmp_path}", "--num_epochs=3", "--epochs_per_stage=2",
          "--decay_lr=True", "--learning_rate=3e-3", "--min_lr=1e-4", "--warmup_steps=20",
          f"--reset_optimizer={reset}")
    cosine = lambda step: 1e-4 + 0.5 * (3e-3 - 1e-4) * (1 + math.cos(math.pi * step / 24))
    expected = [cosine(step) * min(1, (n + 1) / 20) for step, n in zip((7, 15, 23), since_reset)]
    assert [r["lr"] for r in read_log(str(tmp_path))] == pytest.approx(expected, rel=1e-9)
    # and the AdamW of the last epoch has taken as many steps as there were since its reset
    optimizer = torch.load(tmp_path / "ckpt.pt", weights_only=True)["optimizer"]
    assert {int(v["step"]) for v in optimizer["state"].values()} == {since_reset[-1] + 1}
    # which stepped at the rate of the schedule (the last step's), in both parameter groups
    assert [g["lr"] for g in optimizer["param_groups"]] == pytest.approx([expected[-1]] * 2, rel=1e-9)


def test_two_adamw_steps_by_hand(data_dir, tmp_path, monkeypatch):
    """The optimizer of the recipe: AdamW at learning_rate, betas (0.9, 0.999), eps 1e-8, whose
    decoupled weight decay shrinks the matrices and embeddings but not the biases and LayerNorm
    gains (nanoGPT's grouping; the official code decays all). Two steps (128 examples each)
    with gradients planted here, against Adam written out: each step p <- p (1 - lr wd) -
    lr m^ / (sqrt(v^) + eps), with m, v the moving averages of g and g^2 and m^, v^ their
    bias corrections."""
    import coconut
    lr, wd, b1, b2, eps = 0.1, 0.5, 0.9, 0.999, 1e-8  # not the paper's lr 1e-4 and wd 0.01: a decay must show
    before, grads = {}, []

    def planted(model, batches, *args, **kwargs):
        g = torch.Generator().manual_seed(len(grads))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if not grads:  # biases start at 0: move every parameter, so a decay would show
                    p.add_(torch.randn(p.shape, generator=g))
                    before[name] = p.detach().clone()
                p.grad = torch.randn(p.shape, generator=g) * (1 + 9 * len(grads))  # step 2: 10x larger
        grads.append({name: p.grad.clone() for name, p in model.named_parameters()})
        return 1.0

    monkeypatch.setattr(coconut, "forward_backward", planted)
    train_here(monkeypatch, f"--data_dir={data_dir}", f"--out_dir={tmp_path}", "--num_epochs=1",
               "--batch_size=128", f"--learning_rate={lr}", f"--weight_decay={wd}", "--max_new_tokens=4")
    assert len(grads) == 2
    after = torch.load(tmp_path / "ckpt.pt", weights_only=True)["model"]
    assert before and before.keys() <= after.keys()
    for name, p in before.items():
        decayed = name.endswith(".weight") and ".ln_" not in name  # by name here, not by shape
        m = v = 0
        for t, g in enumerate((grads[0][name], grads[1][name]), start=1):
            m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
            p = p * (1 - lr * wd * decayed) - lr * (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + eps)
        assert torch.allclose(after[name], p, rtol=1e-5, atol=1e-6), (name, decayed)


@pytest.mark.parametrize("pad, uniform_prob", [(True, 0.0), (False, 0.0), (True, 1.0)])
def test_what_a_step_trains_on(data_dir, tmp_path, monkeypatch, pad, uniform_prob):
    """The batches a step hands to coconut.forward_backward, read there: batch_size x
    gradient_accumulation_steps examples a step (16 x 2), every example once an epoch; the
    stage follows start_epoch (epochs 4 and 5 of a run with K=3, one epoch a stage: stages 3
    and 4); each row holds min(stage, K) x c_thought thoughts (c=2), or with
    pad_latent_to_max=False only as many as its steps, or with uniform_prob=1 those of a stage
    drawn uniformly from 0..its steps; the model is in train mode with its dropout (after each
    evaluation too), in exact float32. The untrained model's answers are cut at max_new_tokens."""
    import coconut
    records = load_records(os.path.join(data_dir, "prosqa_train.json"))
    vocab = data.Vocab.from_records(records)
    n_steps = {r["question"] + "\n": len(r["steps"]) for r in records}
    assert len(n_steps) == len(records) and set(n_steps.values()) == {2, 3}  # questions are unique
    steps = []

    def recorded(model, batches, autocast, ddp=False):
        with autocast:
            exact = (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
        rows = []
        for b in batches:
            micro = []
            for ids, mask, latent in zip(b["idx"].tolist(), b["mask"].tolist(), b["latent"].tolist()):
                ids = [t for t, m in zip(ids, mask) if m]
                micro.append((vocab.decode(ids[:ids.index(vocab.bot)]), sum(latent)))
            rows.append(micro)
        steps.append(dict(training=model.training, dropout=model.config.dropout, exact=exact, rows=rows))
        return 1.0

    monkeypatch.setattr(coconut, "forward_backward", recorded)
    train_here(monkeypatch, f"--data_dir={data_dir}", f"--out_dir={tmp_path}", "--max_latent_stage=3",
               "--c_thought=2", "--start_epoch=3", "--num_epochs=5", "--batch_size=16",
               "--gradient_accumulation_steps=2", f"--pad_latent_to_max={pad}", f"--uniform_prob={uniform_prob}",
               "--dropout=0.1", "--dtype=float32", "--max_new_tokens=3")
    assert len(steps) == 2 * 8  # 256 examples, 32 a step
    for s in steps:
        assert s["training"] and s["dropout"] == 0.1 and s["exact"]
        assert [len(micro) for micro in s["rows"]] == [16, 16]
    for epoch in range(2):
        seen = Counter(q for s in steps[8 * epoch:8 * (epoch + 1)] for micro in s["rows"] for q, _ in micro)
        assert seen == Counter(n_steps.keys())  # each example once, none twice
    thoughts = [(n_steps[q], t) for s in steps for micro in s["rows"] for q, t in micro]
    if uniform_prob == 0:
        assert all(t == 2 * (3 if pad else min(3, n)) for n, t in thoughts)
    else:  # a stage s drawn from 0..n, so 2s thoughts (s <= n <= K), each s about 1/(n+1) of the rows
        for n in (2, 3):
            drawn = Counter(t for m, t in thoughts if m == n)
            assert set(drawn) == {2 * s for s in range(n + 1)}
            if n == 2:  # 430 draws over two epochs: a share's sd is 0.023
                assert all(abs(c / sum(drawn.values()) - 1 / 3) < 0.1 for c in drawn.values())
    log = read_log(str(tmp_path))
    assert [(r["epoch"], r["stage"], r["train_loss"]) for r in log] == [(4, 3, 1.0), (5, 4, 1.0)]
    # validation: the thoughts of the last stages (padded or not) and 1 to 3 generated tokens
    val = load_records(os.path.join(data_dir, "prosqa_valid.json"))[:32]  # TINY's n_val
    thoughts = sum(2 * (3 if pad else min(3, len(r["steps"]))) for r in val) / len(val)
    for r in log:
        assert thoughts < r["mean_tokens"] <= thoughts + 3


def test_start_from_a_cot_run_at_stage_one(data_dir, tmp_path):
    """The paper's GSM8k recipe: a CoT run, then Coconut from its checkpoint with start_epoch =
    epochs_per_stage. The run trains epochs 3-4 only, at stage 1, from the CoT model's weights,
    on the schedule (learning rate) of a run whose first two epochs ran, with its own dropout
    (not the CoT run's); it resumes exactly."""
    cot = tmp_path / "cot"
    train(f"--data_dir={data_dir}", f"--out_dir={cot}", "--num_epochs=1", "--method=cot", "--dropout=0.1")
    start = ["--epochs_per_stage=2", "--num_epochs=4", "--start_epoch=2", f"--init_from={cot}/best.pt",
             "--decay_lr=True", "--learning_rate=3e-3", "--min_lr=1e-4"]
    train(f"--data_dir={data_dir}", f"--out_dir={tmp_path / 'full'}", *start)
    log = read_log(str(tmp_path / "full"))
    assert [(r["epoch"], r["stage"]) for r in log] == [(3, 1), (4, 1)]
    cosine = lambda step: 1e-4 + 0.5 * (3e-3 - 1e-4) * (1 + math.cos(math.pi * step / 32))
    assert [r["lr"] for r in log] == pytest.approx([cosine(23), cosine(31)], rel=1e-9)
    # the first epoch's loss is the CoT model's at stage 1, far below a fresh model's
    fresh = tmp_path / "fresh"
    train(f"--data_dir={data_dir}", f"--out_dir={fresh}", *start[:3], "--decay_lr=True",
          "--learning_rate=3e-3", "--min_lr=1e-4")
    assert log[0]["train_loss"] < read_log(str(fresh))[0]["train_loss"] - 0.3
    ckpt = torch.load(tmp_path / "full" / "ckpt.pt", weights_only=True)
    assert ckpt["config"]["start_epoch"] == 2 and ckpt["epoch"] == 4
    assert ckpt["model_args"]["dropout"] == 0.0  # this run's (the default), not the CoT run's 0.1
    # a start from a checkpoint of another task or tokenizer is refused in one line
    for other, said in (("--task=arith", "'arith'/'task'"), ("--tokenizer=words", "'prosqa'/'words'")):
        p = train(f"--data_dir={data_dir}", f"--out_dir={tmp_path / 'other'}", *start, other, check=False)
        assert p.returncode != 0 and f"with tokenizer='task', not {said}" in p.stderr, p.stderr[-500:]
    # killed in epoch 4, it resumes with the same epoch 4
    part = tmp_path / "part"
    train_killed(8 + 3, f"--data_dir={data_dir}", f"--out_dir={part}", *start)
    train(f"--data_dir={data_dir}", f"--out_dir={part}", *start[:3], "--init_from=resume", *start[4:])
    resumed = read_log(str(part))
    for key in ("epoch", "stage", "train_loss", "val_loss", "val_acc", "lr"):
        assert [r[key] for r in resumed] == pytest.approx([r[key] for r in log], abs=1e-6), key


def tiny_gpt2_file(path):
    """A GPT-2 with the real vocabulary in Hugging Face's layout (Conv1D weights as (in, out))."""
    torch.manual_seed(0)
    C, L = 16, 1
    t = {"wte.weight": torch.randn(50257, C) * 0.02, "wpe.weight": torch.randn(224, C) * 0.02,
         "ln_f.weight": torch.ones(C), "ln_f.bias": torch.zeros(C)}
    for i in range(L):
        p = f"h.{i}."
        t.update({p + "ln_1.weight": torch.ones(C), p + "ln_1.bias": torch.zeros(C),
                  p + "ln_2.weight": torch.ones(C), p + "ln_2.bias": torch.zeros(C),
                  p + "attn.c_attn.weight": torch.randn(C, 3 * C) * 0.02, p + "attn.c_attn.bias": torch.zeros(3 * C),
                  p + "attn.c_proj.weight": torch.randn(C, C) * 0.02, p + "attn.c_proj.bias": torch.zeros(C),
                  p + "mlp.c_fc.weight": torch.randn(C, 4 * C) * 0.02, p + "mlp.c_fc.bias": torch.zeros(4 * C),
                  p + "mlp.c_proj.weight": torch.randn(4 * C, C) * 0.02, p + "mlp.c_proj.bias": torch.zeros(C)})
    write_safetensors(t, str(path))
    (path.parent / "config.json").write_text(json.dumps({"n_head": 2}))


@pytest.mark.parametrize("tokenizer", ["gpt2", "task"])
def test_train_from_pretrained_file(data_dir, tmp_path, tokenizer):
    weights = tmp_path / "gpt2" / "model.safetensors"
    weights.parent.mkdir()
    tiny_gpt2_file(weights)
    out = tmp_path / "out"
    p = train(f"--data_dir={data_dir}", f"--out_dir={out}", "--num_epochs=1", f"--init_from={weights}",
              f"--tokenizer={tokenizer}", "--n_val=8", "--dropout=0.1")
    ckpt = torch.load(out / "ckpt.pt", weights_only=True)
    assert ckpt["model_args"]["dropout"] == 0.1  # HF GPT-2's dropout in train mode, as the paper's runs
    # the file sets the model's size, whatever the flags say (TINY asks for block_size=256)
    assert ckpt["model_args"]["n_embd"] == 16 and ckpt["model_args"]["block_size"] == 224
    wte = ckpt["model"]["transformer.wte.weight"]
    assert wte.shape[0] == (50304 if tokenizer == "gpt2" else ckpt["model_args"]["vocab_size"])
    assert "1 process" in p.stdout or "1 process" in p.stderr


def test_torchrun_two_processes_equal_one(data_dir, tmp_path):
    """DDP end to end: 2 processes x 16 rows give the losses of 1 process x 32 rows."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    common = [*TINY, f"--data_dir={data_dir}", "--num_epochs=2"]
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "train.py", *common, "--batch_size=16", f"--out_dir={tmp_path / 'ddp'}"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    train(f"--data_dir={data_dir}", "--num_epochs=2", f"--out_dir={tmp_path / 'one'}")
    ddp, one = read_log(str(tmp_path / "ddp")), read_log(str(tmp_path / "one"))
    assert len(ddp) == len(one) == 2
    for a, b in zip(ddp, one):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-5)
        assert a["val_acc"] == b["val_acc"]


def test_arith_end_to_end(tmp_path):
    """The arithmetic task: generated on first use with its knobs, trained, evaluated."""
    d, out = tmp_path / "arith", tmp_path / "out"
    train("--task=arith", f"--data_dir={d}", f"--out_dir={out}", "--num_epochs=2", "--n_train=64",
          "--min_steps=2", "--max_steps=3", "--max_value=20", "--batch_size=16")
    meta = json.loads((d / "meta.json").read_text())
    assert meta == dict(task="arith", n_train=64, seed=0, min_steps=2, max_steps=3, max_value=20, ops="+-*/")
    assert len(load_records(str(d / "arith_train.json"))) == 64
    assert [r["stage"] for r in read_log(str(out))] == [0, 1]
    p = train("--eval_only=True", f"--out_dir={out}")
    assert "arith_test.json" in p.stdout and "epoch 2, stage 1" in p.stdout
    assert json.loads(p.stdout.strip().splitlines()[-1])["n"] == 32  # TINY sets n_val=32


def test_prontoqa_end_to_end(tmp_path):
    """ProntoQA with shorter chains (--hops=2): generated on first use, trained through two
    stages, evaluated from the checkpoint by eval_only, and its thoughts named by sample.py."""
    d, out = tmp_path / "prontoqa", tmp_path / "out"
    train("--task=prontoqa", "--hops=2", f"--data_dir={d}", f"--out_dir={out}", "--num_epochs=2",
          "--n_train=400", "--batch_size=16", "--block_size=256", "--n_val=8", "--max_new_tokens=16")
    assert json.loads((d / "meta.json").read_text()) == dict(task="prontoqa", n_train=400, seed=0, hops=2)
    assert all(len(r["steps"]) == 3 for r in load_records(str(d / "prontoqa_train.json")))
    sizes = [len(load_records(str(d / f"prontoqa_{s}.json"))) for s in ("train", "valid", "test")]
    assert sizes == [400, 200, 800]  # the paper's 200 / 800 beside the train size asked for
    log = read_log(str(out))
    assert [r["stage"] for r in log] == [0, 1] and all(math.isfinite(r["val_loss"]) for r in log)
    assert log[1]["train_loss"] < log[0]["train_loss"]
    assert os.path.exists(out / "best.pt") and os.path.exists(out / "ckpt.pt")
    p = train("--eval_only=True", f"--out_dir={out}", "--n_val=8")
    assert "prontoqa_test.json" in p.stdout and "epoch 2, stage 1" in p.stdout
    assert json.loads(p.stdout.strip().splitlines()[-1])["n"] == 8
    env = dict(os.environ, OMP_NUM_THREADS="1")
    s = subprocess.run([sys.executable, "sample.py", f"--out_dir={out}", "--max_new_tokens=8", "--device=cpu"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert s.returncode == 0, s.stderr
    assert "prontoqa, trained with 2 thought(s)" in s.stdout
    assert re.search(r"thought 2: [a-z]+pus [\d.]+, ", s.stdout)  # named by concept


@pytest.fixture(scope="module")
def one_epoch(data_dir, tmp_path_factory):
    """A two-epoch run killed after its first epoch, for the tests below to copy and break."""
    out = tmp_path_factory.mktemp("one_epoch") / "out"
    train_killed(8 + 1, f"--data_dir={data_dir}", f"--out_dir={out}", "--num_epochs=2")
    return out


def copy_of(run, tmp_path):
    shutil.copytree(run, tmp_path / "out")
    return str(tmp_path / "out")


def test_a_nan_loss_stops_the_run_and_keeps_the_checkpoint(data_dir, one_epoch, tmp_path, monkeypatch):
    import coconut
    out = copy_of(one_epoch, tmp_path)
    before = open(os.path.join(out, "ckpt.pt"), "rb").read()
    monkeypatch.setattr(coconut, "forward_backward", lambda *a, **k: float("nan"))
    with pytest.raises(SystemExit, match="the loss is nan at step 8 .*ckpt.pt keeps the last finished epoch"):
        train_here(monkeypatch, f"--data_dir={data_dir}", f"--out_dir={out}", "--num_epochs=2", "--init_from=resume")
    assert open(os.path.join(out, "ckpt.pt"), "rb").read() == before and len(read_log(out)) == 1


def test_a_full_disk_keeps_the_previous_checkpoint(data_dir, one_epoch, tmp_path, monkeypatch):
    out = copy_of(one_epoch, tmp_path)
    before = open(os.path.join(out, "ckpt.pt"), "rb").read()

    def full_disk(obj, f, *a, **k):
        f.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(SystemExit, match="could not write .*No space left on device"):
        train_here(monkeypatch, f"--data_dir={data_dir}", f"--out_dir={out}", "--num_epochs=2", "--init_from=resume")
    assert open(os.path.join(out, "ckpt.pt"), "rb").read() == before
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]  # the temporary file is gone


@pytest.mark.parametrize("content, message", [
    (b"", "cannot be read as a checkpoint"),
    (b"PK\x03\x04 random bytes", "cannot be read as a checkpoint"),
    ("truncated", "cannot be read as a checkpoint"),
    ("no model", "not a checkpoint written by train.py (no model)"),
    ("no optimizer", "cannot resume a run: it has no optimizer"),
])
def test_damaged_checkpoints_are_named(data_dir, one_epoch, tmp_path, monkeypatch, content, message):
    out = copy_of(one_epoch, tmp_path)
    path = tmp_path / "out" / "ckpt.pt"
    if content == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    elif content in ("no model", "no optimizer"):
        ckpt = torch.load(path, weights_only=True)
        del ckpt[content.split()[1]]
        torch.save(ckpt, path)
    else:
        path.write_bytes(content)
    with pytest.raises(SystemExit, match=re.escape(message)):
        train_here(monkeypatch, f"--data_dir={data_dir}", f"--out_dir={out}", "--num_epochs=2", "--init_from=resume")


def test_data_errors_are_one_line(tmp_path, monkeypatch, capsys):
    """A malformed data file names the file, record and field, without a traceback; so does a
    validation example whose steps do not fit the context (before any training)."""
    d = tmp_path / "data"
    d.mkdir()
    good = dict(question="Tom is a wumpus. Is Tom a wumpus or yumpus?", steps=["Tom is a wumpus."], answer="Tom is a wumpus.")
    for split in ("train", "valid", "test"):
        (d / f"prosqa_{split}.json").write_text(json.dumps([good] * 40))
    (d / "prosqa_valid.json").write_text(json.dumps([good, dict(good, steps=[3])]))
    with pytest.raises(SystemExit, match=r"record 1: field 'steps' must be a list of strings"):
        train_here(monkeypatch, f"--data_dir={d}", f"--out_dir={tmp_path / 'o'}", "--batch_size=8", "--n_train=-1")
    long_steps = dict(good, steps=["Tom is a wumpus."] * 60)  # ~360 tokens of steps
    (d / "prosqa_valid.json").write_text(json.dumps([good, long_steps]))
    with pytest.raises(SystemExit, match=r"validation example 1 needs \d+ positions, more than the context block_size=256"):
        train_here(monkeypatch, f"--data_dir={d}", f"--out_dir={tmp_path / 'o'}", "--batch_size=8", "--n_train=-1")
    # a task vocabulary holds the train split's tokens: a validation word outside it is named
    (d / "prosqa_valid.json").write_text(json.dumps([good, dict(good, question="Tom is a zebra. Is Tom a wumpus?")]))
    with pytest.raises(SystemExit, match=r"'zebra' not in this model's task vocabulary .*tokenizer='gpt2'.*--n_train"):
        train_here(monkeypatch, f"--data_dir={d}", f"--out_dir={tmp_path / 'o'}", "--batch_size=8", "--n_train=-1")
    assert not os.path.exists(tmp_path / "o" / "log.jsonl")


# -----------------------------------------------------------------------------
# bad input: one clear line, nothing half-written, nothing silently changed

def test_a_write_that_fails_leaves_no_temporary_file(data_dir, tmp_path):
    """The first checkpoint cannot be written (a file-size limit, as a full disk would): the
    run stops with one line saying which file and why, and leaves no temporary file."""
    import resource
    limit = 50_000  # bytes: the log fits, a checkpoint does not
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "train.py", *TINY, f"--data_dir={data_dir}", f"--out_dir={tmp_path}",
                        "--num_epochs=1"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert re.search(rf"could not write \S+\.pt: a file-size limit of {limit} bytes", p.stderr), p.stderr[-2000:]
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp") or f.endswith(".pt")]


def test_an_enormous_word_is_quoted_short(tmp_path, monkeypatch):
    d = tmp_path / "data"
    d.mkdir()
    good = dict(question="Tom is a wumpus. Is Tom a wumpus or yumpus?", steps=["Tom is a wumpus."], answer="Tom is a wumpus.")
    for split in ("train", "valid", "test"):
        (d / f"prosqa_{split}.json").write_text(json.dumps([good] * 40))
    (d / "prosqa_valid.json").write_text(json.dumps([dict(good, question="Tom is a " + "x" * 12000 + ".")]))
    with pytest.raises(SystemExit) as e:
        train_here(monkeypatch, f"--data_dir={d}", f"--out_dir={tmp_path / 'o'}", "--batch_size=8", "--n_train=-1")
    assert "'xxxxxxxx" in str(e.value) and "(12000 characters)" in str(e.value) and len(str(e.value)) < 400


@pytest.mark.parametrize("name", ["RANK", "LOCAL_RANK", "WORLD_SIZE"])
def test_a_broken_launcher_environment_is_named(data_dir, tmp_path, monkeypatch, name):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv(name, "zero")
    with pytest.raises(SystemExit, match=f"environment variable {name}='zero' is not a number"):
        train_here(monkeypatch, f"--data_dir={data_dir}", f"--out_dir={tmp_path}")


def test_one_run_at_a_time_in_an_out_dir(data_dir, tmp_path, monkeypatch):
    """A second run in a used out_dir is refused with the holder's pid; once the holder has
    died, its lock is gone and a run goes ahead."""
    holder = subprocess.Popen([sys.executable, "-c", "import checkpoint, sys, time; lock = checkpoint.claim("
                               f"{str(tmp_path)!r}, False, False); print('held', flush=True); time.sleep(60)"],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SystemExit, match=f"is in use by another run \\(pid {holder.pid}\\)"):
            train_here(monkeypatch, f"--data_dir={data_dir}", f"--out_dir={tmp_path}", "--num_epochs=1")
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / "lock").read_text().strip() == str(holder.pid)  # a stale lock file
    train(f"--data_dir={data_dir}", f"--out_dir={tmp_path}", "--num_epochs=1")
    assert len(read_log(str(tmp_path))) == 1


def test_eval_only_says_which_settings_came_from_the_checkpoint(data_dir, one_epoch):
    p = train("--eval_only=True", f"--out_dir={one_epoch}", "--method=cot", "--c_thought=3", "--n_val=4")
    said = [line for line in p.stdout.splitlines() if "overridden by the checkpoint" in line]
    assert said == ["--method='cot' is overridden by the checkpoint, trained with method='coconut'",
                    "--c_thought=3 is overridden by the checkpoint, trained with c_thought=1"]  # each flag
    result = json.loads(p.stdout.strip().splitlines()[-1])
    assert (result["method"], result["c_thought"], result["max_latent_stage"]) == ("coconut", 1, 2)
    # max_new_tokens is the checkpoint's (40, not the default 96) unless a flag asks for another
    # (longer questions than trained on need more)
    for flags, expected in (([], 40), (["--max_new_tokens=7"], 7)):
        p = subprocess.run([sys.executable, "train.py", "--eval_only=True", f"--out_dir={one_epoch}",
                            "--n_val=4", *flags], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert json.loads(p.stdout.strip().splitlines()[-1])["max_new_tokens"] == expected, p.stderr


@pytest.mark.skipif(torch.cuda.is_available() or torch.backends.mps.is_available(), reason="a machine with no GPU")
@pytest.mark.parametrize("device", ["cuda", "cuda:1", "mps"])
def test_a_device_this_machine_lacks_is_one_line(data_dir, tmp_path, monkeypatch, device):
    with pytest.raises(SystemExit, match=re.escape(f"device={device!r} is not on this machine") +
                       r".*it has cpu: --device=auto \(the default\) picks the first"):
        train_here(monkeypatch, f"--data_dir={data_dir}", f"--out_dir={tmp_path}", f"--device={device}")
    with pytest.raises(SystemExit, match="device='gpu': choose 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"):
        train_here(monkeypatch, f"--data_dir={data_dir}", f"--out_dir={tmp_path}", "--device=gpu")


@pytest.mark.filterwarnings("ignore:CUDA is not available")  # autocast on the pretended CUDA
def test_float32_is_exact_float32(monkeypatch):
    """dtype='float32' (the official bf16: False) computes in float32 as PyTorch does by default:
    no autocast, and on CUDA no TF32 matmuls or convolutions, even after something switched
    them on; under bfloat16 autocast what stays float32 may use TF32. CUDA is pretended here
    (devices.available), so only the switches are read, not a GPU."""
    import devices
    monkeypatch.setattr(devices, "available", lambda: ["cuda", "cpu"])
    switches = (torch.backends.cuda.matmul, torch.backends.cudnn)
    for dtype, tf32 in (("float32", False), ("bfloat16", True), ("float32", False)):
        for s in switches:
            monkeypatch.setattr(s, "allow_tf32", not tf32)  # the opposite: setup must set it
        device, ptdtype, autocast = devices.setup("cuda", dtype)
        assert (device, ptdtype) == ("cuda", devices.PTDTYPES[dtype])
        assert [s.allow_tf32 for s in switches] == [tf32, tf32], dtype
    for dtype in ("float32", "bfloat16"):  # autocast: none under float32
        _, _, autocast = devices.setup("cpu", dtype)
        with autocast:
            y = torch.ones(4, 4) @ torch.ones(4, 4)
        assert y.dtype == devices.PTDTYPES[dtype]


def test_eval_only_of_an_exported_folder(tmp_path):
    """The model sample.py uses (models/prosqa_cpu, an exported folder) is evaluated by eval_only
    on the test split it carries; a folder that is no export, and eval_out, are checked."""
    out = tmp_path / "answers.json"
    p = subprocess.run([sys.executable, "train.py", "--eval_only=True", "--init_from=models/prosqa_cpu",
                        "--n_val=20", f"--eval_out={out}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert os.path.join("models", "prosqa_cpu", "prosqa_test.json") in p.stdout
    result = json.loads(p.stdout.strip().splitlines()[-1])
    saved = json.loads(out.read_text())  # each question's answer, for paired tests between methods
    assert result["n"] == 20 == len(saved["results"]) and saved["val_acc"] == result["val_acc"]
    assert sum(r["correct"] for r in saved["results"]) == round(20 * result["val_acc"])
    with pytest.raises(SystemExit, match="is a folder without model.json"):
        checkpoint.starting_checkpoint(dict(out_dir="out", init_from=str(tmp_path), eval_only=True, val_data=""))
    p = subprocess.run([sys.executable, "train.py", "--eval_only=True", "--init_from=models/prosqa_cpu",
                        f"--eval_out={tmp_path}/no/such/folder.json"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 1 and "its folder does not exist" in p.stderr


def test_no_vocabulary_from_no_records():
    with pytest.raises(ValueError, match="made from the training split's records, and none were given"):
        data.Vocab.from_records([], "task")
