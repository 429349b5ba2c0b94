"""
Where a run computes: the device ('auto' picks CUDA, then MPS, then the CPU, and a device this
machine lacks is a one-line error naming the ones it has), the dtype and its autocast, and
torchrun's environment for DDP.
"""
import os
import re
from contextlib import nullcontext

import torch

PTDTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def available():
    """The devices this machine can run on, as --device takes them."""
    cuda = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return (["cuda"] if cuda else []) + cuda + (["mps"] if torch.backends.mps.is_available() else []) + ["cpu"]


def setup(device="auto", dtype="auto"):
    """(device, compute dtype, autocast context). 'auto' picks CUDA, then MPS, then the CPU,
    and bfloat16 where CUDA supports it, else float32 (on CPU the small models gain nothing
    from bfloat16: see docs/performance.md). float32 is exact float32 (no TF32 matmuls), as
    the paper trained; under bfloat16 autocast what stays float32 may use TF32."""
    here = available()
    if device == "auto":
        device = here[0]
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", device):
        raise SystemExit(f"device={device!r}: choose 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    if device not in here:
        build = "" if device.startswith("mps") or torch.version.cuda else " (this torch is a CPU build)"
        raise SystemExit(f"device={device!r} is not on this machine{build}; it has {', '.join(here)}: "
                         "--device=auto (the default) picks the first")
    device_type = device.split(":")[0]
    if dtype == "auto":
        dtype = "bfloat16" if device_type == "cuda" and torch.cuda.is_bf16_supported() else "float32"
    if dtype not in PTDTYPES:
        raise SystemExit(f"dtype={dtype!r}: choose 'auto' or one of {', '.join(PTDTYPES)}")
    ptdtype = PTDTYPES[dtype]
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
