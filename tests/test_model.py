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
