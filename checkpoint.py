"""
Checkpoints: train.py writes ckpt.pt (every epoch) and best.pt (its best validation accuracy)
into its out_dir, atomically; this reads them back (never unpickling code: weights_only=True),
checks the one a run starts from against its settings, holds one run at a time in an out_dir,
and exports a model as safetensors plus JSON (no pickle), as the one shipped in models/.

    python checkpoint.py export out/best.pt models/prosqa_cpu    # best.pt -> a folder
"""
import fcntl
import json
import os
import resource
import shutil
import sys

import torch

import data
import tasks
from files import atomic_write
from model import GPT, GPTConfig
from weights import read_safetensors, write_safetensors


CHECKPOINTS = ("best.pt", "ckpt.pt")  # what eval_only and sample.py look for, in this order
# settings a resumed run may change: where it runs and how it is evaluated
RESUME_MAY_CHANGE = {"out_dir", "init_from", "eval_only", "val_data", "eval_out", "n_latent", "device",
                     "dtype", "compile", "eval_batch_size", "n_val", "overwrite"}
# settings eval_only takes from the checkpoint: the model is evaluated the way it was trained
# (max_new_tokens too, unless a flag asks for more: longer questions than trained on need it)
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


def starting_checkpoint(config, given=()):
    """The checkpoint a train.py run starts from, checked against its settings, and the
    settings to run with. None for a run from scratch or from GPT-2's weights. A resumed run
    must have its checkpoint's settings (but RESUME_MAY_CHANGE); eval_only takes EVAL_TAKES from
    the checkpoint, and says which of the flags `given` it overrides; another run's checkpoint
    must be of the same task and tokenizer."""
    config = dict(config)
    out_dir, init_from = config["out_dir"], config["init_from"]
    if init_from == "resume":
        ckpt = load_checkpoint(os.path.join(out_dir, "ckpt.pt"))
    elif config["eval_only"] and init_from == "scratch":
        ckpt = load_checkpoint(find_checkpoint(out_dir))
    elif init_from.endswith(".pt") or os.path.isfile(os.path.join(init_from, "model.json")):
        ckpt = load_checkpoint(init_from)  # another run's, or a folder export() wrote
        test = os.path.join(init_from, f"{ckpt['config']['task']}_test.json")  # export() copies it
        if config["eval_only"] and not config["val_data"] and os.path.isfile(test):
            config["val_data"] = test
    elif os.path.isdir(init_from):
        raise SystemExit(f"init_from={init_from!r} is a folder without model.json, so not a model "
                         "exported by python checkpoint.py export; give a .pt checkpoint or such a folder")
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
        takes = [k for k in EVAL_TAKES if not (k == "max_new_tokens" and k in given)]
        for k in takes:  # evaluated the way it was trained (the results line lists these too)
            if k in given and saved[k] != config[k]:
                print(f"--{k}={config[k]!r} is overridden by the checkpoint, trained with {k}={saved[k]!r}")
        config.update({k: saved[k] for k in takes})
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
        with atomic_write(path, "wb") as f:
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
        with atomic_write(path) as f:
            f.writelines(lines)


def export(ckpt_path, folder):
    """Write a checkpoint's model as folder/model.safetensors and its settings and vocabulary
    as folder/model.json (nothing pickled), with the test split it was trained beside."""
    ckpt = load_checkpoint(ckpt_path)
    os.makedirs(folder, exist_ok=True)
    write_safetensors(ckpt["model"], os.path.join(folder, "model.safetensors"))
    meta = dict(model_args=ckpt["model_args"], config=ckpt["config"], vocab=ckpt["vocab"],
                epoch=ckpt.get("epoch"), source=ckpt_path)
    with atomic_write(os.path.join(folder, "model.json")) as f:
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
        raise SystemExit("usage: python checkpoint.py export CHECKPOINT.pt FOLDER")
    print(f"wrote {export(sys.argv[2], sys.argv[3])}")
