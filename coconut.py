"""
Coconut's latent loop: the model's last hidden state is fed back as its next input embedding.

A continuous thought is the final hidden state (after ln_f) at one position, used as the input
embedding of the next position instead of the embedding of a sampled token. It is never
decoded, so it is not forced to commit to one next step.

Training differs from CoT in one way: the inputs of the thought columns are not known before
the forward pass, they are its outputs. So a batch from data.collate (whose rows all hold their
thoughts in the same columns [start, start + n_latent)) runs in n + 1 passes through the KV
cache: one over the prefix, one per thought, then the last one also reads the rest. Gradients
flow through every thought. Without thoughts (CoT, stage 0) it is one ordinary forward.

    python -c "import coconut; help(coconut.latent_forward)"
"""
from contextlib import nullcontext

import torch
import torch.distributed as dist
import torch.nn.functional as F

from model import KVCache


def latent_forward(model, batch, cache=None):
    """Final hidden states (B, T, C) of a batch whose thoughts are continuous (the fast loop).

    The batch (data.collate) holds idx (B, T) token ids, pos (B, T) positions, mask (B, T) real
    tokens, latent (B, T) the columns whose input is a continuous thought, and start, n_latent:
    those columns are [start, start + n_latent) in every row that has them. The pause methods'
    slots are <pause> tokens, not latent, so their batch is one ordinary forward."""
    idx, pos, mask, latent = batch["idx"], batch["pos"], batch["mask"], batch["latent"]
    start, end, T = batch["start"], batch["start"] + batch["n_latent"], idx.size(1)
    x = model.transformer.wte(idx)  # (B, T, C); thought columns are replaced pass by pass
    if end == start:  # no thoughts: one plain forward
        return model(embeds=x, pos=pos, mask=mask, cache=cache)
    if cache is None:  # training keeps the graph through the cache (see KVCache)
        cache = KVCache(model.config, idx.size(0), T, idx.device, training=torch.is_grad_enabled())
    h = [model(embeds=x[:, :start], pos=pos[:, :start], mask=mask[:, :start], cache=cache)]
    for t in range(start, end):
        thought = h[-1][:, -1:]  # (B, 1, C) the hidden state of the previous column
        # a row with fewer thoughts than the batch reads its own token in this column instead
        e = torch.where(latent[:, t:t + 1, None], thought, x[:, t:t + 1])  # (B, 1, C)
        stop = t + 1 if t + 1 < end else T  # the last thought's pass also reads the rest
        e = torch.cat([e, x[:, t + 1:stop]], dim=1)  # (B, stop - t, C)
        h.append(model(embeds=e, pos=pos[:, t:stop], mask=mask[:, t:stop], cache=cache))
    return torch.cat(h, dim=1)  # (B, T, C)


def reference_forward(model, batch):
    """The same function in its plainest form: no cache, the whole sequence recomputed once per
    thought, thoughts filled left to right wherever they are. Slow; for tests and bench.py."""
    idx, pos, mask, latent = batch["idx"], batch["pos"], batch["mask"], batch["latent"]
    x = model.transformer.wte(idx)  # (B, T, C)
    for t in latent.any(0).nonzero().flatten().tolist():
        h = model(embeds=x, pos=pos, mask=mask)  # (B, T, C)
        x = x.clone()  # out of place: the previous x is saved for backward
        x[:, t] = torch.where(latent[:, t, None], h[:, t - 1], x[:, t])
    return model(embeds=x, pos=pos, mask=mask)


def lm_loss(model, h, labels, n_labels=None):
    """Next-token cross-entropy, with logits computed only where there is a label; the mean
    over this batch's labels, or the sum divided by n_labels (a larger batch's count)."""
    h, y = h[:, :-1], labels[:, 1:]  # hidden state t predicts token t+1
    keep = y != -100
    logits = model.logits(h[keep])  # (N, V), never (B, T, V)
    if n_labels is None:
        return F.cross_entropy(logits.float(), y[keep])
    return F.cross_entropy(logits.float(), y[keep], reduction="sum") / n_labels


def forward_backward(model, batches, autocast=nullcontext(), ddp=False):
    """Forward and backward over a training step's micro-batches (and, with ddp, every rank's);
    the caller steps the optimizer. The gradient equals that of one batch holding them all:
    each loss is a sum over labels divided by the whole step's label count. Returns the loss."""
    n_labels = sum((b["labels"][:, 1:] != -100).sum() for b in batches)
    if ddp:
        dist.all_reduce(n_labels)
    total = 0.0
    for batch in batches:
        with autocast:
            loss = lm_loss(model, latent_forward(model, batch), batch["labels"], n_labels)
        loss.backward()
        total += loss.detach()
    if ddp:  # sum the gradients of all ranks, in one message
        grads = [p.grad for p in model.parameters()]
        flat = torch.cat([g.flatten() for g in grads])
        dist.all_reduce(flat)
        for g, f in zip(grads, flat.split([g.numel() for g in grads])):
            g.copy_(f.view_as(g))
        dist.all_reduce(total)
    return float(total)


@torch.no_grad()
def generate(model, batch, max_new_tokens, eos_id, return_thoughts=False):
    """Greedy answers for a batch of prompts (data.layout(..., prompt_only=True), collated).

    The thoughts run through the KV cache, then each new token is one forward of one position
    per row; a row that has emitted <eos> keeps emitting it.
    Returns new tokens (B, n) and, if asked, the continuous thoughts (B, n_latent, C).
    """
    idx = batch["idx"]
    B, T = idx.shape
    cache = KVCache(model.config, B, T + max_new_tokens, idx.device)
    h = latent_forward(model, batch, cache)  # (B, T, C)
    thoughts = h[:, batch["start"] - 1:batch["start"] - 1 + batch["n_latent"]]  # (B, n, C)
    # rows with fewer thoughts end earlier and are right-padded: continue from each row's
    # last real token (the padding between is masked, so it is as if it were not there)
    last = (batch["mask"] * torch.arange(T, device=idx.device)).argmax(1)  # (B,)
    h = h[torch.arange(B, device=idx.device), last][:, None]  # (B, 1, C)
    pos = batch["pos"].gather(1, last[:, None])  # (B, 1)
    ones = torch.ones(B, 1, dtype=torch.bool, device=idx.device)
    done = torch.zeros(B, 1, dtype=torch.bool, device=idx.device)
    out = []
    for _ in range(max_new_tokens):
        tok = model.logits(h).argmax(-1)  # (B, 1)
        tok = tok.masked_fill(done, eos_id)
        out.append(tok)
        done |= tok == eos_id
        # stop when every row is done (one sync per token), and never run an unused forward
        if bool(done.all()) or len(out) == max_new_tokens:
            break
        pos = pos + 1
        h = model(idx=tok, pos=pos, mask=ones, cache=cache)  # (B, 1, C)
    tokens = torch.cat(out, dim=1)  # (B, n)
    return (tokens, thoughts) if return_thoughts else tokens
