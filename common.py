"""
What train.py, sample.py and bench.py share: choosing the device and dtype, and reading the
checkpoints that train.py writes (never unpickling code: weights_only=True), or a model
exported as safetensors plus JSON, as the one shipped in models/.

    python common.py export out/best.pt models/prosqa_cpu    # best.pt -> a folder, no pickle
"""
import json
import os
import shutil
import sys
import tempfile
from contextlib import nullcontext

import torch

import data
from model import GPT, GPTConfig
from weights import read_safetensors, write_safetensors

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def setup_device(device="auto", dtype="auto"):
    """(device, compute dtype, autocast context). 'auto' picks CUDA, then MPS, then the CPU,
    and bfloat16 where CUDA supports it, else float32 (on CPU the small models gain nothing
    from bfloat16: see docs/performance.md)."""
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
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device, ptdtype, autocast


def find_checkpoint(out_dir):
    """out_dir's best checkpoint, else its last one (a run killed before its first best.pt)."""
    for name in ("best.pt", "ckpt.pt"):
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


def model_from_checkpoint(ckpt):
    """(GPT with the checkpoint's weights, on the CPU; its Vocab)."""
    model = GPT(GPTConfig(**ckpt["model_args"]))
    model.load_state_dict(ckpt["model"])
    vocab = data.Vocab(ckpt["vocab"]) if ckpt.get("vocab") is not None else data.Vocab()
    return model, vocab


def export(ckpt_path, folder):
    """Write a checkpoint's model as folder/model.safetensors and its settings and vocabulary
    as folder/model.json (nothing pickled), with the test split it was trained beside."""
    ckpt = load_checkpoint(ckpt_path)
    os.makedirs(folder, exist_ok=True)
    write_safetensors(ckpt["model"], os.path.join(folder, "model.safetensors"))
    meta = dict(model_args=ckpt["model_args"], config=ckpt["config"], vocab=ckpt["vocab"],
                epoch=ckpt.get("epoch"), source=ckpt_path)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(meta, f, indent=1)
    os.replace(tmp, os.path.join(folder, "model.json"))
    cfg = ckpt["config"]
    test = os.path.join(cfg["data_dir"] or os.path.join("data", cfg["task"]), f"{cfg['task']}_test.json")
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
