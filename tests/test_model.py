"""GPT-2 by hand: parity with Hugging Face's GPT-2, the KV cache, the safetensors reader, and
keep_freed_memory."""
import os
import platform
import struct
import subprocess
import sys

import pytest
import torch

from model import GPT, GPTConfig, KVCache, read_safetensors, write_safetensors

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "tiny_gpt2")


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(n_layer=2, n_head=4, n_embd=32, vocab_size=64, block_size=64)
    model = GPT(GPTConfig(**{**cfg, **kw}))
    with torch.no_grad():  # larger weights than GPT-2's init, so differences show in the logits
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model.eval()


def test_hf_parity_logits():
    expected = read_safetensors(os.path.join(FIXTURE, "expected.safetensors"))
    for name in ("model.safetensors", "model_hub_layout.safetensors"):
        model = GPT.from_pretrained(os.path.join(FIXTURE, name)).eval()
        with torch.no_grad():
            logits = model.lm_head(model(expected["input_ids"]))
        assert (logits - expected["logits"]).abs().max() < 1e-5, name


def test_hf_parity_left_padded():
    expected = read_safetensors(os.path.join(FIXTURE, "expected.safetensors"))
    model = GPT.from_pretrained(FIXTURE).eval()
    mask = expected["pad_attention_mask"].bool()
    with torch.no_grad():
        logits = model.lm_head(model(expected["pad_input_ids"], pos=expected["pad_position_ids"], mask=mask))
    assert (logits - expected["pad_logits"])[mask].abs().max() < 1e-5


def test_hf_parity_greedy_generation_with_cache():
    expected = read_safetensors(os.path.join(FIXTURE, "expected.safetensors"))
    model = GPT.from_pretrained(FIXTURE).eval()
    idx = expected["input_ids"][:1, :6]
    cache = KVCache(model.config, 1, 16, "cpu")
    out = []
    with torch.no_grad():
        h = model(idx, cache=cache)
        for _ in range(10):
            tok = model.lm_head(h[:, -1:]).argmax(-1)  # (1, 1)
            out.append(tok)
            h = model(tok, cache=cache)
    assert torch.equal(torch.cat(out, 1), expected["greedy_tokens"])


def test_fp16_weights_load():
    expected = read_safetensors(os.path.join(FIXTURE, "expected.safetensors"))
    model = GPT.from_pretrained(os.path.join(FIXTURE, "model_fp16.safetensors")).eval()
    assert model.transformer.wte.weight.dtype == torch.float32
    with torch.no_grad():
        logits = model.lm_head(model(expected["input_ids"]))
    assert (logits - expected["logits"]).abs().max() < 0.1  # fp16 rounding of the weights


def test_pretrained_vocab_padding():
    model = GPT.from_pretrained(FIXTURE, vocab_size=128)
    ref = read_safetensors(os.path.join(FIXTURE, "model.safetensors"))["transformer.wte.weight"]
    assert model.config.vocab_size == 128
    assert torch.equal(model.transformer.wte.weight[:100], ref)
    assert model.lm_head.weight is model.transformer.wte.weight


def test_pretrained_missing_file_and_offline(monkeypatch, tmp_path):
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        GPT.from_pretrained(str(tmp_path / "nothing.safetensors"))
    import urllib.request
    def offline(*a, **k):
        raise OSError("network unreachable")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setenv("COCONUT_CACHE", str(tmp_path))
    with pytest.raises(RuntimeError, match="pass its path"):
        GPT.from_pretrained("gpt2")


def test_pretrained_rejects_other_model(tmp_path):
    write_safetensors({"weight": torch.zeros(3, 3)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="does not hold GPT-2 weights"):
        GPT.from_pretrained(str(tmp_path / "model.safetensors"))


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
    model = GPT(GPTConfig(n_layer=4, n_head=4, n_embd=64, vocab_size=128, block_size=32))
    proj = model.transformer.h[0].attn.c_proj.weight
    assert abs(proj.std().item() - 0.02 / (2 * 4) ** 0.5) < 0.003
    assert abs(model.transformer.h[0].mlp.c_fc.weight.std().item() - 0.02) < 0.002
    assert model.transformer.h[0].mlp.c_fc.bias.abs().max() == 0


def test_safetensors_round_trip(tmp_path):
    tensors = {"a": torch.randn(3, 4), "b": torch.arange(5), "c": torch.randn(2).half(),
               "d": torch.randn(2, 2).bfloat16(), "e": torch.tensor([True, False]), "f": torch.zeros(0, 3)}
    path = str(tmp_path / "x.safetensors")
    write_safetensors(tensors, path)
    back = read_safetensors(path)
    assert back.keys() == tensors.keys()
    for k in tensors:
        assert back[k].dtype == tensors[k].dtype and torch.equal(back[k], tensors[k])


def _header_file(path, header, data=b""):
    import json
    head = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head + data)


@pytest.mark.parametrize("case,match", [
    ("truncated", "truncated"),
    ("short", "shorter than its 8-byte header"),
    ("huge_header", "runs past the end"),
    ("not_json", "not JSON"),
    ("bad_dtype", "unknown dtype"),
    ("bad_shape", "bad shape"),
    ("size_mismatch", "needs 16"),
    ("overlap", "overlap"),
])
def test_safetensors_bad_files(tmp_path, case, match):
    path = str(tmp_path / "bad.safetensors")
    if case == "truncated":
        write_safetensors({"a": torch.randn(100)}, path)
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) - 10)
    elif case == "short":
        open(path, "wb").write(b"\x01\x02")
    elif case == "huge_header":
        open(path, "wb").write(struct.pack("<Q", 1 << 40) + b"{}")
    elif case == "not_json":
        open(path, "wb").write(struct.pack("<Q", 4) + b"\xff{[a")
    elif case == "bad_dtype":
        _header_file(path, {"a": {"dtype": "F7", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4)
    elif case == "bad_shape":
        _header_file(path, {"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4)
    elif case == "size_mismatch":
        _header_file(path, {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, b"\0" * 16)
    elif case == "overlap":
        _header_file(path, {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                            "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12)
    with pytest.raises(ValueError, match=match):
        read_safetensors(path)


FREE_AND_MEASURE = """
import os, sys, torch, model
if sys.argv[1] == 'keep':
    assert model.keep_freed_memory()
resident = lambda: int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
before = resident()
x = torch.ones(64 * 2**20 // 4)  # 64 MB: over glibc's largest mmap threshold (32 MB)
del x
print((resident() - before) // 2**20)  # MB still resident after the free
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or not os.path.exists("/proc/self/statm"),
                    reason="glibc's allocator, measured through Linux's /proc")
def test_keep_freed_memory_keeps_large_blocks():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # where model.py is
    kept = {how: int(subprocess.run([sys.executable, "-c", FREE_AND_MEASURE, how], check=True, cwd=root,
                                    capture_output=True, text=True).stdout) for how in ("keep", "default")}
    assert kept["keep"] >= 60 and kept["default"] < 4, kept  # without it the 64 MB went back to the OS
