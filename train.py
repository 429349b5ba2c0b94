"""
Trains Coconut (or a baseline) with the multi-stage curriculum, evaluating every epoch.

    python train.py config/prosqa_cpu.py                      # small model, 2 CPU cores, 13-24 min
    python train.py config/prosqa_cpu.py --method=cot         # the CoT baseline, same budget
    python train.py config/prosqa.py                          # the paper's recipe (GPU)
    torchrun --standalone --nproc_per_node=4 train.py config/prosqa.py
    python train.py --eval_only=True --val_data=FILE --n_latent=6      # evaluates out/best.pt
"""
import json
import math
import os
import random
import sys
import time

import torch
import torch.distributed as dist
from tqdm import tqdm

import checkpoint
import coconut
import data
import devices
import scoring
import speedups
import tasks
import weights
from configurator import check_train, configure, given
from files import atomic_write, load_records
from model import GPT, GPTConfig

# -----------------------------------------------------------------------------
# default config values: the paper's ProsQA recipe with a small model from scratch
# I/O
out_dir = "out"
init_from = "scratch"  # 'scratch', 'resume' (from out_dir), 'gpt2'..'gpt2-xl', a model.safetensors, or another run's .pt
start_epoch = 0  # first epoch to train, stage and learning rate as if the ones before had run: from
# a CoT run's .pt, start_epoch=epochs_per_stage skips the stage 0 it has (the official `resume`)
eval_only = False  # evaluate init_from (default: out_dir's best checkpoint) and exit
val_data = ""  # eval_only: a file in the official {question, steps, answer} format
eval_out = ""  # eval_only: also write each question's answer and verdict to this JSON file
n_latent = -1  # eval_only: number of thoughts at inference; -1 means the trained number
# data: the tasks in tasks/ are generated into data_dir on first use; other tasks bring files.
# Each task's generator knobs are settings too (tasks/arith.py: --max_steps=5)
task = "prosqa"  # 'prosqa', 'prontoqa', 'arith', or any name with data_dir/{task}_{train,valid,test}.json
data_dir = ""  # default data/{task}
n_train = -1  # examples generated for the train split; -1: the task's default size
data_seed = 0
tokenizer = "task"  # 'gpt2': GPT-2's BPE, all 50,257 ids; 'task': only the ids of the train split;
# 'words': whole words of the train split (from scratch only: " wumpus" is one id, not three)
# model (init_from='scratch')
n_layer = 2
n_head = 4
n_embd = 128
block_size = 1024
dropout = 0.0
# method and curriculum (official knob names)
method = "coconut"  # coconut, cot, no_cot, pause_token, no_thoughts, pause_as_thought, no_curriculum
c_thought = 1  # continuous thoughts per language step
max_latent_stage = 6  # K: stages 1..K replace one more step each; later stages use K*c thoughts
epochs_per_stage = 5
pad_latent_to_max = True  # examples with fewer steps than the stage still get min(stage, K)*c
uniform_prob = 0.0  # chance that an example uses a random stage in 0..len(steps)
reset_optimizer = "epoch"  # a fresh AdamW every 'epoch' (the official run.py), every 'stage' (its
# epochs_per_stage epochs, which go on past the last stage K), or 'never'
sort_chunk = 0  # sort each run of this many batches by question length: less padding (0: off)
num_epochs = 50
# optimizer
batch_size = 32  # per process, per micro-step
gradient_accumulation_steps = 1
learning_rate = 1e-4
weight_decay = 0.01
warmup_steps = 0  # linear warmup after every optimizer reset
decay_lr = False  # cosine decay to min_lr over the whole run
min_lr = 0.0
grad_clip = 0.0  # 0: no clipping (as the paper)
# evaluation
eval_batch_size = 128
max_new_tokens = 96
n_val = -1  # validation examples evaluated per epoch; -1: all
# system
device = "auto"  # 'auto', 'cpu', 'cuda', 'cuda:1', 'mps'
dtype = "auto"  # 'auto' (bfloat16 where supported, else float32), 'float32', 'bfloat16', 'float16'
compile = True  # torch.compile the model on CUDA (ignored elsewhere)
seed = 0
overwrite = False  # start over in an out_dir that holds a run (its checkpoints and log are deleted)
# -----------------------------------------------------------------------------
config_keys = [k for k, v in globals().items() if not k.startswith("_") and isinstance(v, (int, float, bool, str))]
settings = {**{k: globals()[k] for k in config_keys}, **tasks.all_knobs()}
config = configure(settings, sys.argv[1:], aliases={"vocab": "tokenizer"})  # saved in checkpoints
check_train(config)  # bad settings fail here, before anything slow happens
ckpt, config = checkpoint.starting_checkpoint(config, given(sys.argv[1:]))  # resume, eval_only, another run's
globals().update(config)
# -----------------------------------------------------------------------------

# distributed data parallel: torchrun sets RANK, LOCAL_RANK and WORLD_SIZE
ddp = devices.distributed() is not None
if ddp:
    dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    if torch.cuda.is_available():
        device = f"cuda:{devices.distributed()[1]}"
        torch.cuda.set_device(device)
else:
    rank, world_size = 0, 1
master = rank == 0
device, ptdtype, autocast = devices.setup(device, dtype)
device_type = device.split(":")[0]
torch.manual_seed(seed)


def log(*args):
    if master:
        tqdm.write(" ".join(str(a) for a in args))


# -----------------------------------------------------------------------------
# data: generated on first use (tasks/), tokenized once

if master and not eval_only:
    tasks.ensure_splits(task, tasks.task_dir(task, data_dir), n_train=None if n_train < 0 else n_train,
                        seed=data_seed, **tasks.knobs_of(task, config))
if ddp:
    dist.barrier()  # the other ranks wait until rank 0 has written the data
try:
    if eval_only:
        val_records = load_records(val_data or tasks.split_path(task, data_dir, "test"))
        train_records = []
    else:
        train_records = load_records(tasks.split_path(task, data_dir, "train"))
        val_records = load_records(tasks.split_path(task, data_dir, "valid"))
except (FileNotFoundError, ValueError) as e:  # a malformed file: which record, which field
    raise SystemExit(str(e)) from None

# -----------------------------------------------------------------------------
# model, and the vocabulary it reads

if ckpt is not None:
    if init_from != "resume" and not eval_only:  # another run's weights, this run's dropout
        ckpt["model_args"]["dropout"] = dropout
    model, vocab = checkpoint.model_from_checkpoint(ckpt)
else:  # from scratch a model needs only the tokens of its training split (tokenizer='task'/'words')
    vocab = data.Vocab.from_records(train_records, tokenizer)
    if init_from == "scratch":
        model = GPT(GPTConfig(block_size=block_size, vocab_size=vocab.size, n_tokens=vocab.n_tokens,
                              n_layer=n_layer, n_head=n_head, n_embd=n_embd, dropout=dropout))
    else:  # pretrained GPT-2: a name or a model.safetensors path
        try:
            model = weights.coconut_gpt2(init_from, vocab, dropout)
        except (FileNotFoundError, ValueError, RuntimeError) as e:  # no file, not GPT-2, offline
            raise SystemExit(f"init_from={init_from!r}: {e}") from None
for k in ("n_layer", "n_head", "n_embd", "block_size"):
    config[k] = globals()[k] = getattr(model.config, k)
model_args = dict(vars(model.config))
model.to(device)
try:
    train_set = data.tokenize(train_records, vocab)
    val_set = data.tokenize(val_records, vocab, questions_only=eval_only)
except ValueError as e:  # a word outside the task vocabulary (the checkpoint's, or the train split's)
    more = "" if ckpt else "; or generate more training examples (--n_train), so they cover the validation split's"
    raise SystemExit(f"error: {e}{more}") from None
if n_val > 0:
    val_records, val_set = val_records[:n_val], val_set[:n_val]
layout_args = dict(c_thought=c_thought, max_latent_stage=max_latent_stage,
                   pad_latent_to_max=pad_latent_to_max)

# every sequence must fit the context: check the longest before training starts
thoughts_max = 2 + max(max_latent_stage * c_thought, n_latent)  # <bot>, <eot> and the thoughts
full = lambda ex: len(ex["question"]) + thoughts_max + sum(map(len, ex["steps"])) + len(ex["answer"])
longest = max([(full(ex), i, "train") for i, ex in enumerate(train_set)] +  # a bound on every stage
              [(max(full(ex), len(ex["question"]) + thoughts_max + max_new_tokens), i, "validation")
               for i, ex in enumerate(val_set)])  # its loss, and a prompt with the tokens after it
if longest[0] > model.config.block_size:
    raise SystemExit(f"{longest[2]} example {longest[1]} needs {longest[0]} positions, more than "
                     f"the context block_size={model.config.block_size} (generation adds "
                     f"max_new_tokens={max_new_tokens}); raise block_size (a model trained anew), "
                     "lower max_new_tokens or n_latent, or shorten the data")
# the model the training step runs: compiled on CUDA (evaluation runs the eager one, whose
# shapes change every batch)
step_model = torch.compile(model, dynamic=True) if compile and device_type == "cuda" else model
speedups.enable(model, device_type, eager_float32=step_model is model and ptdtype == torch.float32)

# -----------------------------------------------------------------------------
# evaluation: loss at the current stage, and accuracy by greedy generation


def stage_of(epoch):
    return epoch // epochs_per_stage if data.has_stages(method) else 0


def selectable(epoch):
    """Whether best.pt may come from this epoch: for a method with a curriculum only the last
    stage the run reaches counts (stages past K are all one layout), since an earlier stage's
    model is scored on fewer thoughts than it will be tested with."""
    if data.METHODS[method].stage is not None:  # one layout throughout
        return True
    last = lambda stage: min(stage, max_latent_stage + 1)
    return last(stage_of(epoch)) == last(stage_of(num_epochs - 1))


@torch.no_grad()
def evaluate(stage, n_latent=None, with_loss=True):
    """Validation loss, answer accuracy, CoT and first-step exact match, mean generated tokens
    (this rank's share of the validation set, then summed over ranks); each question's result."""
    model.eval()
    totals = torch.zeros(7, device=device)  # loss, labels, then scoring.counts
    mine, results = list(range(rank, len(val_set), world_size)), []
    for i in range(0, len(mine), eval_batch_size):
        ids = mine[i:i + eval_batch_size]
        if with_loss:
            batch = data.collate([data.layout(val_set[j], vocab, method, stage, **layout_args) for j in ids], vocab, device)
            with autocast:
                h = coconut.latent_forward(model, batch)
                n = (batch["labels"][:, 1:] != -100).sum()
                totals[0] += coconut.lm_loss(model, h, batch["labels"]).float() * n
            totals[1] += n
        with autocast:
            results += scoring.answer(model, vocab, config, [val_records[j] for j in ids],
                                      [val_set[j] for j in ids], stage, n_latent, max_new_tokens)
    totals[2:] += torch.tensor(scoring.counts(results), device=device)
    if ddp:
        dist.all_reduce(totals)
    model.train()
    loss = dict(val_loss=(totals[0] / totals[1].clamp(min=1)).item()) if with_loss else {}
    return dict(**loss, **scoring.metrics(totals[2:].tolist(), len(val_set))), results


if eval_only:
    if eval_out and ddp:
        raise SystemExit("eval_out writes every question's result from one process: run without torchrun")
    if master:
        held = [f"{key} {ckpt[key]}" for key in ("epoch", "stage") if ckpt and ckpt.get(key) is not None]
        print(f"evaluating {len(val_set)} examples of {val_data or tasks.split_path(task, data_dir, 'test')} "
              f"with {method}, {'the trained number of' if n_latent < 0 else n_latent} thoughts"
              + (f" (checkpoint of {', '.join(held)})" if held else ""))
    result, results = evaluate(max_latent_stage + 1, None if n_latent < 0 else n_latent, with_loss=False)
    taken = {k: config[k] for k in checkpoint.EVAL_TAKES}  # the settings it was evaluated with
    if master and eval_out:
        with atomic_write(eval_out) as f:
            json.dump(dict(result, **taken, n_latent=n_latent, val_data=val_data, results=results), f)
    if master:
        print(json.dumps(dict(result, **taken)))
    sys.exit(0)

# -----------------------------------------------------------------------------
# training


def make_optimizer():
    decay = [p for p in model.parameters() if p.dim() >= 2]  # matrices and embeddings
    no_decay = [p for p in model.parameters() if p.dim() < 2]  # biases and LayerNorm gains
    groups = [dict(params=decay, weight_decay=weight_decay), dict(params=no_decay, weight_decay=0.0)]
    return torch.optim.AdamW(groups, lr=learning_rate, betas=(0.9, 0.999),
                             fused=device_type == "cuda")


def lr_at(step, since_reset, total_steps):
    lr = learning_rate
    if decay_lr:
        lr = min_lr + 0.5 * (learning_rate - min_lr) * (1 + math.cos(math.pi * step / total_steps))
    if warmup_steps > 0:
        lr *= min(1.0, (since_reset + 1) / warmup_steps)
    return lr


def epoch_batches(epoch):
    """This rank's micro-batches for an epoch: the order and the uniform_prob stage draws
    depend only on (seed, epoch), so a resumed run sees exactly the same data."""
    rng = random.Random(seed * 100003 + epoch)
    per_step = batch_size * gradient_accumulation_steps * world_size
    steps = data.batch_order([len(ex["question"]) for ex in train_set], per_step, rng, sort_chunk)
    stage = stage_of(epoch)
    stages = {i: data.sample_stage(rng, len(train_set[i]["steps"]), stage, uniform_prob)
              for rows in steps for i in rows}  # drawn for all rows, so every rank agrees
    for rows in steps:
        micro = []
        for m in range(gradient_accumulation_steps):
            lo = (m * world_size + rank) * batch_size
            micro.append([data.layout(train_set[i], vocab, method, stages[i], **layout_args)
                          for i in rows[lo:lo + batch_size]])
        yield micro


steps_per_epoch = len(train_set) // (batch_size * gradient_accumulation_steps * world_size)
if steps_per_epoch == 0:
    raise SystemExit(f"{len(train_set)} training examples are fewer than one step's "
                     f"batch_size * gradient_accumulation_steps * world_size; lower batch_size")
total_steps = steps_per_epoch * num_epochs
lock = checkpoint.claim(out_dir, init_from == "resume", overwrite) if master else None  # held to the end
optimizer = make_optimizer()
# the schedule of a run that starts at start_epoch is that of a run whose earlier epochs ran
first_epoch, step, since_reset, best_acc = start_epoch, start_epoch * steps_per_epoch, 0, -1.0
if init_from == "resume":
    lacking = {"optimizer", "epoch", "step", "since_reset", "best_acc", "rng"} - ckpt.keys()
    if lacking:
        raise SystemExit(f"{out_dir}/ckpt.pt cannot resume a run: it has no {', '.join(sorted(lacking))}")
    optimizer.load_state_dict(ckpt["optimizer"])
    first_epoch, step, since_reset, best_acc = ckpt["epoch"], ckpt["step"], ckpt["since_reset"], ckpt["best_acc"]
    torch.set_rng_state(ckpt["rng"])
    log(f"resuming {out_dir} at epoch {first_epoch}")
    if master:
        checkpoint.trim_log(out_dir, first_epoch)
elif start_epoch > 0:
    log(f"starting at epoch {start_epoch + 1} (stage {stage_of(start_epoch)}) from {init_from}")
ckpt = None  # free memory
log(f"{method} on {task}: {len(train_set)} train / {len(val_set)} val examples, "
    f"{model.num_params() / 1e6:.2f}M parameters, {vocab.kind} vocabulary of {vocab.n_tokens}, "
    f"{device} {ptdtype}, {world_size} process(es), {steps_per_epoch} steps per epoch")


def save_checkpoint(name, epoch):
    checkpoint.save_checkpoint(os.path.join(out_dir, name), dict(
        model=model.state_dict(), optimizer=optimizer.state_dict(), model_args=model_args, config=config,
        vocab=vocab.tokens, epoch=epoch, stage=stage_of(epoch - 1), step=step, since_reset=since_reset,
        best_acc=best_acc, rng=torch.get_rng_state()))


for epoch in range(first_epoch, num_epochs):
    stage = stage_of(epoch)
    new_stage = epoch > 0 and stage != stage_of(epoch - 1)
    if reset_optimizer == "epoch" or (reset_optimizer == "stage" and new_stage):  # also on resume
        optimizer, since_reset = make_optimizer(), 0
    t0, tokens, loss_sum = time.time(), 0, 0.0
    bar = tqdm(epoch_batches(epoch), total=steps_per_epoch, disable=not master, leave=False,
               desc=f"epoch {epoch + 1}/{num_epochs} stage {stage}")
    for micro in bar:
        lr = lr_at(step, since_reset, total_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batches = [data.collate(rows, vocab, device) for rows in micro]
        loss = coconut.forward_backward(step_model, batches, autocast, ddp)
        if not math.isfinite(loss):
            raise SystemExit(f"the loss is {loss} at step {step} (epoch {epoch + 1}, stage {stage}): the "
                             f"run stops, and {out_dir}/ckpt.pt keeps the last finished epoch. Lower "
                             "learning_rate or set grad_clip, then resume with --init_from=resume")
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step, since_reset = step + 1, since_reset + 1
        tokens += sum(int(b["mask"].sum()) for b in batches) * world_size
        loss_sum += loss
        bar.set_postfix(loss=f"{loss:.4f}", stage=stage, lr=f"{lr:.1e}",
                        tok_s=f"{tokens / (time.time() - t0):.0f}")
    train_time = time.time() - t0
    result, _ = evaluate(stage)
    best = selectable(epoch) and result["val_acc"] > best_acc
    best_acc = max(best_acc, result["val_acc"]) if selectable(epoch) else best_acc
    line = dict(epoch=epoch + 1, stage=stage, train_loss=loss_sum / steps_per_epoch, **result,
                lr=lr, epoch_time=round(train_time, 2), eval_time=round(time.time() - t0 - train_time, 2),
                tokens_per_s=round(tokens / train_time), best=best)
    if master:
        log(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in line.items()))
        with open(os.path.join(out_dir, "log.jsonl"), "a") as f:
            f.write(json.dumps(line) + "\n")
        if best:
            save_checkpoint("best.pt", epoch + 1)
        save_checkpoint("ckpt.pt", epoch + 1)  # last, so a resume finds the newest state
log(f"done: best validation accuracy {best_acc:.4f} (of the epochs best.pt may come from); checkpoints in {out_dir}")
if ddp:
    dist.destroy_process_group()
