"""
CPU speed tricks for the latent loop, kept out of the reading path: model.py runs the same
without them, and they change no result (tests/test_speedups.py). train.py and bench.py
switch them on with one call:

    speedups.enable(model, device_type, eager_float32=True)

1. Weight gradients added in place. Autograd makes a weight's gradient once per use, as a new
   weight-sized tensor, and then sums them. The latent loop uses every block weight once per
   pass, and a thought's pass has one position per row, so for GPT-2 small on a CPU writing
   and summing those gradients moves more memory than the pass's matmuls. Here each block
   Linear adds dy^T x into .grad itself, one addmm_ per pass (Megatron-LM's
   gradient_accumulation_fusion does the same on GPUs). Eager float32 only: torch.compile and
   autocast keep autograd's way.
2. glibc keeps freed memory. By default it hands every freed block over 32 MB (and the heap's
   free top) back to the OS, so each step of a GPT-2-sized model page-faults its large tensors
   in again; we tell it to keep them.

The measurements behind both are in docs/performance.md.
"""
import ctypes

import torch
import torch.nn as nn
import torch.nn.functional as F


def enable(model, device_type, eager_float32):
    """Switch on what helps here: freed memory kept on CPU, in-place weight gradients in eager
    float32. Returns the names of the tricks switched on."""
    on = []
    if device_type == "cpu" and keep_freed_memory():
        on.append("keep_freed_memory")
    if eager_float32:
        for m in model.transformer.h.modules():
            if type(m) is nn.Linear:
                m.__class__ = LinearGradInPlace  # same parameters and state_dict, new forward
        on.append("grad_in_place")
    return on


class LinearGradInPlace(nn.Linear):
    """nn.Linear whose weight gradient is added straight into .grad (see the module's doc)."""

    def forward(self, x):
        if torch.is_grad_enabled():
            return AddGradInPlace.apply(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)


class AddGradInPlace(torch.autograd.Function):
    """y = x W^T + b, whose backward adds dy^T x into W.grad itself and returns none for W."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        x2, dy2 = x.flatten(0, -2), dy.flatten(0, -2)  # (N, in), (N, out)
        if ctx.needs_input_grad[1]:  # a frozen weight gets no .grad, as with autograd
            if weight.grad is None:
                weight.grad = torch.zeros_like(weight)
            weight.grad.addmm_(dy2.t(), x2)  # (out, in) += (out, N) @ (N, in)
        dbias = dy2.sum(0) if ctx.needs_input_grad[2] else None  # (out,)
        return dy @ weight, None, dbias  # dx (..., in); W's is done


def keep_freed_memory():
    """Make glibc keep freed memory for reuse: no mmap per large block, no trimming. True if
    set; False where the C library is not glibc (macOS, musl), which is then left alone."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # from glibc's malloc.h
    # -1: never trim (man mallopt)
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, -1))
