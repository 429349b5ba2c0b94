"""GPT-2 by hand: the embeddings entry, the KV cache (cached == full forward, left padding,
gradients through the training cache), GPT-2's initialisation and the context check. Parity
with Hugging Face's GPT-2 is in test_weights.py."""
import pytest
import torch

from model import GPT, GPTConfig, KVCache


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(n_layer=2, n_head=4, n_embd=32, vocab_size=64, block_size=64)
    model = GPT(GPTConfig(**{**cfg, **kw}))
    with torch.no_grad():  # larger weights than GPT-2's init, so differences show in the logits
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model.eval()


def test_embeddings_entry_equals_ids_entry():
    model = tiny()
    idx = torch.randint(0, 64, (3, 12))
    with torch.no_grad():
        a = model(idx)
        b = model(embeds=model.transformer.wte(idx))
    assert torch.equal(a, b)


def left_padded_batch(lengths, T, vocab=64, seed=1):
    g = torch.Generator().manual_seed(seed)
    idx = torch.zeros(len(lengths), T, dtype=torch.long)
    mask = torch.zeros(len(lengths), T, dtype=torch.bool)
    pos = torch.zeros(len(lengths), T, dtype=torch.long)
    for b, n in enumerate(lengths):
        idx[b, T - n:] = torch.randint(0, vocab, (n,), generator=g)
        mask[b, T - n:] = True
        pos[b, T - n:] = torch.arange(n)
    return idx, pos, mask


@pytest.mark.parametrize("chunks", [[10], [4, 1, 1, 1, 3], [7, 3]])
def test_cached_equals_full_forward_left_padded(chunks):
    model = tiny()
    idx, pos, mask = left_padded_batch([10, 6, 3], 10)
    with torch.no_grad():
        full = model(idx, pos=pos, mask=mask)
        cache = KVCache(model.config, 3, 10, "cpu")
        parts, t = [], 0
        for n in chunks:
            parts.append(model(idx[:, t:t + n], pos=pos[:, t:t + n], mask=mask[:, t:t + n], cache=cache))
            t += n
        cached = torch.cat(parts, 1)
    assert (cached - full)[mask].abs().max() < 1e-5
    # each padded row equals the same row run alone, unpadded
    for b, n in enumerate([10, 6, 3]):
        with torch.no_grad():
            alone = model(idx[b:b + 1, 10 - n:])
        assert (full[b, 10 - n:] - alone[0]).abs().max() < 1e-5


def test_training_cache_passes_gradients():
    """The training cache keeps the graph: gradients through cached keys equal the full pass."""
    model = tiny().train()
    idx, pos, mask = left_padded_batch([8, 5], 8)
    full = model(idx, pos=pos, mask=mask)
    g_full = torch.autograd.grad(full[mask].square().sum(), list(model.parameters()))
    cache = KVCache(model.config, 2, 8, "cpu", training=True)
    parts = [model(idx[:, :5], pos=pos[:, :5], mask=mask[:, :5], cache=cache)]
    for t in range(5, 8):
        parts.append(model(idx[:, t:t + 1], pos=pos[:, t:t + 1], mask=mask[:, t:t + 1], cache=cache))
    cached = torch.cat(parts, 1)
    g_cached = torch.autograd.grad(cached[mask].square().sum(), list(model.parameters()))
    for a, b in zip(g_full, g_cached):
        assert (a - b).abs().max() < 1e-4 * (1 + a.abs().max())


def test_generation_cache_is_not_reallocated():
    model = tiny()
    cache = KVCache(model.config, 2, 8, "cpu")
    with torch.no_grad():
        model(torch.zeros(2, 3, dtype=torch.long), cache=cache)
        ptr = cache.k[0].data_ptr()
        model(torch.zeros(2, 1, dtype=torch.long), cache=cache)
    assert cache.k[0].data_ptr() == ptr and cache.end == 4


def test_context_overflow_is_a_clear_error():
    model = tiny(block_size=16)
    with pytest.raises(ValueError, match="block_size=16"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_gpt2_init():
    """GPT-2's init: N(0, 0.02) for every weight matrix and embedding, zero biases, and
    N(0, 0.02 / sqrt(2 n_layer)) for the two projections into the residual stream."""
    torch.manual_seed(0)
    n_layer = 4
    model = GPT(GPTConfig(n_layer=n_layer, n_head=4, n_embd=64, vocab_size=128, block_size=64))
    for name, p in model.named_parameters():
        if name.endswith("c_proj.weight"):
            expected = 0.02 / (2 * n_layer) ** 0.5  # 0.00707; 1/sqrt(n_layer) would be 0.01
        elif name.endswith("bias"):
            assert p.abs().max() == 0, name
            continue
        elif name.startswith("transformer.ln") or ".ln_" in name:
            continue
        else:
            expected = 0.02
        # the sample std of >= 4096 normal draws is within 3% of sigma (about 3 standard errors)
        assert abs(p.std().item() / expected - 1) < 0.03, (name, p.std().item(), expected)
    assert model.lm_head.weight is model.transformer.wte.weight


@pytest.mark.parametrize("masked", [False, True])  # the fast causal kernel; the padding mask (training)
def test_dropout_at_its_three_places(masked):
    """HF GPT-2's dropout in train mode (the paper's 0.1; 0.5 here, so the counts are clear) at
    its three places: the input embeddings (wte + wpe), the attention weights, and each residual
    branch (the attention's and the MLP's output) before it is added. Hooks read each place's
    input and output; the values before dropout are recomputed here: an element either stays,
    scaled by 1/(1-p), or is zeroed, about a share p of them; attention output differs from
    softmax(q k^T / sqrt(hs)) v computed by hand. In eval mode nothing is dropped."""
    p = 0.5
    model = tiny(dropout=p)
    B, T = 2, 16
    idx = torch.randint(0, 64, (B, T), generator=torch.Generator().manual_seed(0))
    pos = torch.arange(T).expand(B, T)
    mask = torch.ones(B, T, dtype=torch.bool) if masked else None
    seen = {}

    def keep(name, what):
        return lambda module, args, out=None: seen.__setitem__(name, (args[0] if what == "in" else out).detach())

    block = model.transformer.h[0]
    hooks = [block.ln_1.register_forward_pre_hook(keep("embedded", "in")),
             block.attn.c_attn.register_forward_hook(keep("qkv", "out")),
             block.attn.c_proj.register_forward_pre_hook(keep("mixed", "in")),
             block.attn.c_proj.register_forward_hook(keep("attn_proj", "out")),
             block.attn.register_forward_hook(keep("attn_branch", "out")),
             block.mlp.c_proj.register_forward_hook(keep("mlp_proj", "out")),
             block.mlp.register_forward_hook(keep("mlp_branch", "out"))]
    C, nh = model.config.n_embd, model.config.n_head
    with torch.no_grad():
        embedded = model.transformer.wte(idx) + model.transformer.wpe(pos)  # before dropout
    for training in (True, False):
        model.train(training)
        torch.manual_seed(1)
        with torch.no_grad():
            model(idx, pos=pos, mask=mask)
        for before, after in ((embedded, seen["embedded"]), (seen["attn_proj"], seen["attn_branch"]),
                              (seen["mlp_proj"], seen["mlp_branch"])):
            kept = after != 0
            assert torch.allclose(after[kept], before[kept] / (1 - p if training else 1), rtol=1e-5, atol=1e-6)
            dropped = 1 - kept.float().mean().item()  # 1024 elements: sd of the share 0.016
            assert (abs(dropped - p) < 0.08) if training else dropped == 0
        q, k, v = (t.view(B, T, nh, C // nh).transpose(1, 2) for t in seen["qkv"].split(C, dim=2))
        scores = (q @ k.transpose(-1, -2)) / (C // nh) ** 0.5
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        by_hand = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C)
        gap = (seen["mixed"] - by_hand).abs().max().item()
        assert gap > 0.1 if training else gap < 1e-5
    for h in hooks:
        h.remove()
