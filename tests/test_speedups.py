"""speedups.py: the in-place weight gradients equal autograd's, and glibc keeps freed memory."""
import os
import platform
import subprocess
import sys

import pytest
import torch

import coconut
import speedups
from test_coconut import batch_of, tiny


def test_grad_in_place_equals_autograd():
    """With speedups.enable every block's Linear adds its weight gradient into .grad itself and
    returns none to autograd. Over two micro-batches (the second adds to the first's .grad),
    every gradient equals plain autograd's."""
    batches = [batch_of((3, 1, 2)), batch_of((0, 2, 4))]
    grads = {}
    for in_place in (False, True):
        model = tiny()
        if in_place:
            # "cuda": the gradient trick alone (the allocator's is tested below, in a subprocess)
            assert speedups.enable(model, "cuda", eager_float32=True) == ["grad_in_place"]
        coconut.forward_backward(model, batches)
        grads[in_place] = {name: p.grad for name, p in model.named_parameters()}
    for name, g in grads[False].items():
        assert (grads[True][name] - g).abs().max() < 1e-5 * (1 + g.abs().max()), name
    # the in-place path was taken: autograd itself returns no gradient for a block's weight
    batch = batch_of((3, 3, 3), pad=True)
    loss = coconut.lm_loss(model, coconut.latent_forward(model, batch), batch["labels"])
    w = model.transformer.h[0].mlp.c_fc.weight
    assert torch.autograd.grad(loss, w, allow_unused=True) == (None,)
    # and a frozen weight gets no .grad, as with autograd
    w.requires_grad_(False)
    w.grad = None
    coconut.forward_backward(model, [batch])
    assert w.grad is None and model.transformer.h[0].mlp.c_proj.weight.grad is not None


FREE_AND_MEASURE = """
import os, sys, torch, speedups
if sys.argv[1] == 'keep':
    assert speedups.keep_freed_memory()
resident = lambda: int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
before = resident()
x = torch.ones(64 * 2**20 // 4)  # 64 MB: over glibc's largest mmap threshold (32 MB)
del x
print((resident() - before) // 2**20)  # MB still resident after the free
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or not os.path.exists("/proc/self/statm"),
                    reason="glibc's allocator, measured through Linux's /proc")
def test_keep_freed_memory_keeps_large_blocks():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # where speedups.py is
    kept = {how: int(subprocess.run([sys.executable, "-c", FREE_AND_MEASURE, how], check=True, cwd=root,
                                    capture_output=True, text=True).stdout) for how in ("keep", "default")}
    assert kept["keep"] >= 60 and kept["default"] < 4, kept  # without it the 64 MB went back to the OS
