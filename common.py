"""
What train.py, sample.py and bench.py share, kept out of their way: choosing the device and
dtype, train.py's checks of its settings and of the checkpoint it starts from, its hold on its
out_dir, and reading the checkpoints it writes (never unpickling code: weights_only=True) or a
model exported as safetensors plus JSON, as the one shipped in models/.

    python common.py export out/best.pt models/prosqa_cpu    # best.pt -> a folder, no pickle
"""
import fcntl
import json
import os
import resource
import shutil
import sys
from contextlib import nullcontext

import torch

import data
import tasks
from configurator import check_ranges
from model import GPT, GPTConfig
from weights import read_safetensors, write_safetensors

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def setup_device(device="auto", dtype="auto"):
    """(device, compute dtype, autocast context). 'auto' picks CUDA, then MPS, then the CPU,
    and bfloat16 where CUDA supports it, else float32 (on CPU the small models gain nothing
    from bfloat16: see docs/performance.md). float32 is exact float32 (no TF32 matmuls), as
    the paper trained; under bfloat16 autocast what stays float32 may use TF32."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    device_type = device.split(":")[0]
    if dtype == "auto":
        dtype = "bfloat16" if device_type == "cuda" and torch.cuda.is_bf16_supported() else "float32"
    if dtype not in DTYPES:
        raise SystemExit(f"dtype={dtype!r}: choose 'auto' or one of {', '.join(DTYPES)}")
    ptdtype = DTYPES[dtype]
    autocast = nullcontext() if ptdtype == torch.float32 else torch.autocast(device_type, dtype=ptdtype)
    if device_type == "cuda":  # TF32 matmuls: float32 range, faster on Ampere and later
        torch.backends.cuda.matmul.allow_tf32 = ptdtype != torch.float32
        torch.backends.cudnn.allow_tf32 = ptdtype != torch.float32
    return device, ptdtype, autocast


def distributed():
    """(rank, local rank, world size) from torchrun's environment, or None outside torchrun."""
    if "RANK" not in os.environ:
        return None
    values = []
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        try:
            values.append(int(os.environ.get(name, "0" if name == "LOCAL_RANK" else "1")))
        except ValueError:
            raise SystemExit(f"environment variable {name}={os.environ[name][:40]!r} is not a number; "
                             "launch with torchrun, or unset RANK for a single process") from None
    return tuple(values)


# -----------------------------------------------------------------------------
# train.py's settings: checked before anything slow happens, each message naming the setting,
# its value and what would be valid

def check_train_settings(c):
    if c["method"] not in data.METHODS:
        raise SystemExit(f"unknown method {c['method']!r}; choose one of {', '.join(data.METHODS)}")
    check_ranges(c, least=dict(max_latent_stage=0, sort_chunk=0, epochs_per_stage=1, c_thought=1,
                               num_epochs=1, batch_size=1, gradient_accumulation_steps=1,
                               eval_batch_size=1, n_layer=1, n_head=1, n_embd=1, block_size=1,
                               max_new_tokens=1, n_latent=-1, warmup_steps=0, n_nodes=4, min_hops=1,
                               hops=1, min_steps=1, max_value=3, seed=0, start_epoch=0),
                 within=dict(uniform_prob=(0.0, 1.0), dropout=(0.0, 0.999), learning_rate=(1e-12, 10.0),
                             min_lr=(0.0, 10.0), weight_decay=(0.0, 10.0), grad_clip=(0.0, 1e9)))
    for key, valid in (("tokenizer", data.TOKENIZERS), ("reset_optimizer", ("epoch", "stage", "never"))):
        if c[key] not in valid:
            raise SystemExit(f"{key}={c[key]!r}: choose one of {', '.join(map(repr, valid))}")
    pretrained = c["init_from"] not in ("scratch", "resume") and not c["init_from"].endswith(".pt")
    if c["tokenizer"] == "words" and pretrained:
        raise SystemExit("tokenizer='words' is for models trained from scratch; GPT-2's weights read "
                         "GPT-2's BPE: use tokenizer='gpt2' (or 'task')")
    if c["start_epoch"] >= c["num_epochs"] and not c["eval_only"]:
        raise SystemExit(f"start_epoch={c['start_epoch']} leaves nothing to train: it must be below "
                         f"num_epochs={c['num_epochs']}")
    if c["n_embd"] % c["n_head"]:
        raise SystemExit(f"n_embd={c['n_embd']} must be a multiple of n_head={c['n_head']} "
                         "(each head gets n_embd / n_head)")
    if c["seed"] >= 2**63:
        raise SystemExit(f"seed={c['seed']} must be below 2**63")
    if not c["out_dir"].strip():
        raise SystemExit("out_dir is empty; name a folder, e.g. --out_dir=out")
    if os.path.exists(c["out_dir"]) and not os.path.isdir(c["out_dir"]):
        raise SystemExit(f"out_dir={c['out_dir']!r} is a file, not a folder")
    if not c["eval_only"]:
        check_fresh(c["out_dir"], c["init_from"] == "resume", c["overwrite"])


# -----------------------------------------------------------------------------
# checkpoints: train.py writes ckpt.pt (every epoch) and best.pt (the best validation accuracy)

CHECKPOINTS = ("best.pt", "ckpt.pt")  # what eval_only and sample.py look for, in this order
# settings a resumed run may change: where it runs and how it is evaluated
RESUME_MAY_CHANGE = {"out_dir", "init_from", "eval_only", "val_data", "n_latent", "device", "dtype",
                     "compile", "eval_batch_size", "n_val", "overwrite"}
# settings eval_only takes from the checkpoint: the model is evaluated the way it was trained
EVAL_TAKES = ("task", "data_dir", "method", "c_thought", "max_latent_stage", "pad_latent_to_max",
              "tokenizer", "max_new_tokens")


def find_checkpoint(out_dir):
    """out_dir's best checkpoint, else its last one (a run killed before its first best.pt)."""
    for name in CHECKPOINTS:
        path = os.path.join(out_dir, name)
        if os.path.isfile(path):
            return path
    raise SystemExit(f"no checkpoint in {out_dir}/ (best.pt or ckpt.pt). Train one first: "
                     f"python train.py config/prosqa_cpu.py --out_dir={out_dir}")


def load_checkpoint(path):
    """The dict train.py saved: model, model_args, config, vocab, and the training state; or,
    for an exported folder, the same keys but the training state."""
    if os.path.isdir(path):
        return load_exported(path)
    if not os.path.isfile(path):
        raise SystemExit(f"no checkpoint at {path}: train one first, e.g. python train.py "
                         f"config/prosqa_cpu.py --out_dir={os.path.dirname(path) or '.'}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle code
    except Exception as e:  # empty, truncated, random bytes, or a pickle that is not plain data
        raise SystemExit(f"{path} cannot be read as a checkpoint ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:120] if str(e) else 'no detail'}); it is damaged "
                         "or was not written by train.py") from None
    missing = {"model", "model_args", "config"} - (ckpt.keys() if isinstance(ckpt, dict) else set())
    if missing:
        raise SystemExit(f"{path} is not a checkpoint written by train.py (no {', '.join(sorted(missing))})")
    return ckpt


def starting_checkpoint(config):
    """The checkpoint a train.py run starts from, checked against its settings, and the
    settings to run with. None for a run from scratch or from GPT-2's weights. A resumed run
    must have its checkpoint's settings (but RESUME_MAY_CHANGE); eval_only takes EVAL_TAKES from
    the checkpoint; another run's checkpoint must be of the same task and tokenizer."""
    config = dict(config)
    out_dir, init_from = config["out_dir"], config["init_from"]
    if init_from == "resume":
        ckpt = load_checkpoint(os.path.join(out_dir, "ckpt.pt"))
    elif config["eval_only"] and init_from == "scratch":
        ckpt = load_checkpoint(find_checkpoint(out_dir))
    elif init_from.endswith(".pt"):
        ckpt = load_checkpoint(init_from)
    else:
        return None, config
    saved = dict(ckpt["config"])
    saved.setdefault("tokenizer", saved.get("vocab"))  # checkpoints before the setting's rename
    if init_from == "resume":
        may_change = set(RESUME_MAY_CHANGE)
        if saved.get("init_from", "scratch") != "scratch":  # its size came from the weights
            may_change |= {"n_layer", "n_head", "n_embd", "block_size", "dropout"}
        diff = [f"{k}={saved[k]!r} (flags: {config[k]!r})" for k in config
                if k not in may_change and k in saved and saved[k] != config[k]]
        if diff:
            longer = "" if not any(d.startswith("num_epochs=") for d in diff) else (
                " To train longer, start a new run from it: --init_from="
                f"{os.path.join(out_dir, 'ckpt.pt')} --start_epoch={ckpt.get('epoch')} --num_epochs=N")
            raise SystemExit(f"{out_dir}/ckpt.pt was trained with other settings: {'; '.join(diff)}. "
                             "Resume with the run's own settings, or start a new run in another "
                             f"--out_dir.{longer}")
    elif config["eval_only"]:
        changed = [f"{k}={saved[k]!r}" for k in EVAL_TAKES if saved[k] != config[k]]
        if changed:  # evaluate the way it was trained (the results line lists these too)
            print(f"from the checkpoint, not the flags: {', '.join(changed)}")
        config.update({k: saved[k] for k in EVAL_TAKES})
    elif (saved["task"], saved["tokenizer"]) != (config["task"], config["tokenizer"]):
        raise SystemExit(f"{init_from} was trained on task={saved['task']!r} with tokenizer="
                         f"{saved['tokenizer']!r}, not {config['task']!r}/{config['tokenizer']!r}")
    return ckpt, config


def model_from_checkpoint(ckpt):
    """(GPT with the checkpoint's weights, on the CPU; its Vocab)."""
    model = GPT(GPTConfig(**ckpt["model_args"]))
    model.load_state_dict(ckpt["model"])
    return model, data.Vocab(ckpt.get("vocab"))


def save_checkpoint(path, ckpt):
    """torch.save, atomically: a run killed while writing, or a full disk, leaves the previous
    file as it was and no temporary file."""
    try:
        with tasks.atomic_write(path, "wb") as f:
            torch.save(ckpt, f)
    except (OSError, RuntimeError) as e:  # torch reports a failed write as a RuntimeError
        raise SystemExit(f"could not write {path}: {why_not_written(e, path)}. "
                         f"{os.path.basename(path)} keeps its previous version; resume with "
                         "--init_from=resume once it can be written") from None


def why_not_written(e, path):
    """What most likely made a write fail, in words."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    if shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free < 1 << 20:
        return "no space left on the disk"
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY:
        return f"a file-size limit of {limit} bytes (ulimit -f)"
    return str(e).strip().splitlines()[-1][:200]


# -----------------------------------------------------------------------------
# out_dir: one run at a time, never a silent restart, a log that matches the checkpoint

RUN_FILES = ("ckpt.pt", "best.pt", "log.jsonl")


def check_fresh(out_dir, resume, overwrite):
    """Refuse a fresh run over an old one, unless overwrite (which claim() acts on); the old
    run's files, if any."""
    used = [f for f in RUN_FILES if os.path.exists(os.path.join(out_dir, f))]
    if used and not resume and not overwrite:
        raise SystemExit(f"{out_dir}/ holds a run ({', '.join(used)}): continue it with --init_from=resume, "
                         "start over with --overwrite=True (deletes them), or choose another --out_dir")
    return used


def claim(out_dir, resume, overwrite):
    """Take out_dir for this run, just before it trains: a lock that a run in another process
    is refused on (naming the holder's pid; the kernel drops it when this process ends, however
    it ends), then check_fresh again (a run may have finished there meanwhile) and, on
    overwrite, delete the old run's files. Returns the lock's file: keep it open to the end."""
    os.makedirs(out_dir, exist_ok=True)
    lock = open(os.path.join(out_dir, "lock"), "a+")
    try:
        fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a POSIX lock: held per process
    except OSError:
        lock.seek(0)
        raise SystemExit(f"{out_dir}/ is in use by another run (pid {lock.read().strip() or '?'}): "
                         "wait for it to end, or choose another --out_dir") from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    used = check_fresh(out_dir, resume, overwrite)
    if used and overwrite and not resume:
        for f in used:
            os.remove(os.path.join(out_dir, f))
    return lock


def trim_log(out_dir, epoch):
    """Keep the log lines of epochs 1..epoch: a run killed after logging an epoch but before
    its checkpoint redoes that epoch on resume, and must not log it twice."""
    path = os.path.join(out_dir, "log.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            lines = [line for line in f if line.strip() and json.loads(line)["epoch"] <= epoch]
        with tasks.atomic_write(path) as f:
            f.writelines(lines)


def export(ckpt_path, folder):
    """Write a checkpoint's model as folder/model.safetensors and its settings and vocabulary
    as folder/model.json (nothing pickled), with the test split it was trained beside."""
    ckpt = load_checkpoint(ckpt_path)
    os.makedirs(folder, exist_ok=True)
    write_safetensors(ckpt["model"], os.path.join(folder, "model.safetensors"))
    meta = dict(model_args=ckpt["model_args"], config=ckpt["config"], vocab=ckpt["vocab"],
                epoch=ckpt.get("epoch"), source=ckpt_path)
    with tasks.atomic_write(os.path.join(folder, "model.json")) as f:
        json.dump(meta, f, indent=1)
    test = tasks.split_path(ckpt["config"]["task"], ckpt["config"]["data_dir"], "test")
    if os.path.isfile(test):
        shutil.copyfile(test, os.path.join(folder, os.path.basename(test)))
    return folder


def load_exported(folder):
    """The checkpoint dict of a folder written by export()."""
    paths = [os.path.join(folder, name) for name in ("model.safetensors", "model.json")]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise SystemExit(f"{folder} is not an exported model: {', '.join(missing)} missing")
    with open(paths[1]) as f:
        meta = json.load(f)
    return dict(model=read_safetensors(paths[0]), **meta)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "export":
        raise SystemExit("usage: python common.py export CHECKPOINT.pt FOLDER")
    print(f"wrote {export(sys.argv[2], sys.argv[3])}")
