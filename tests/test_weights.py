"""Pretrained weights: parity with Hugging Face's GPT-2 (logits, left padding, cached greedy
generation) on a tiny checkpoint written by tests/fixtures/make_tiny_gpt2.py, and the
safetensors reader's checks."""
import os
import struct

import pytest
import torch

import coconut
import data
import weights
from model import GPT, GPTConfig, KVCache
from weights import read_safetensors, write_safetensors

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "tiny_gpt2")


def test_hf_parity_logits():
    expected = read_safetensors(os.path.join(FIXTURE, "expected.safetensors"))
    for name in ("model.safetensors", "model_hub_layout.safetensors"):
        model = weights.from_pretrained(os.path.join(FIXTURE, name)).eval()
        with torch.no_grad():
            logits = model.lm_head(model(expected["input_ids"]))
        assert (logits - expected["logits"]).abs().max() < 1e-5, name


def test_hf_parity_left_padded():
    expected = read_safetensors(os.path.join(FIXTURE, "expected.safetensors"))
    model = weights.from_pretrained(FIXTURE).eval()
    mask = expected["pad_attention_mask"].bool()
    with torch.no_grad():
        logits = model.lm_head(model(expected["pad_input_ids"], pos=expected["pad_position_ids"], mask=mask))
    assert (logits - expected["pad_logits"])[mask].abs().max() < 1e-5


def test_hf_parity_greedy_generation_with_cache():
    expected = read_safetensors(os.path.join(FIXTURE, "expected.safetensors"))
    model = weights.from_pretrained(FIXTURE).eval()
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
    model = weights.from_pretrained(os.path.join(FIXTURE, "model_fp16.safetensors")).eval()
    assert model.transformer.wte.weight.dtype == torch.float32
    with torch.no_grad():
        logits = model.lm_head(model(expected["input_ids"]))
    assert (logits - expected["logits"]).abs().max() < 0.1  # fp16 rounding of the weights


def test_pretrained_vocab_padding():
    model = weights.from_pretrained(FIXTURE, vocab_size=128)
    ref = read_safetensors(os.path.join(FIXTURE, "model.safetensors"))["transformer.wte.weight"]
    assert model.config.vocab_size == 128
    assert torch.equal(model.transformer.wte.weight[:100], ref)
    assert model.lm_head.weight is model.transformer.wte.weight


def test_pretrained_missing_file_and_offline(monkeypatch, tmp_path):
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        weights.from_pretrained(str(tmp_path / "nothing.safetensors"))
    import urllib.request
    def offline(*a, **k):
        raise OSError("network unreachable")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setenv("COCONUT_CACHE", str(tmp_path))
    with pytest.raises(RuntimeError, match="pass its path"):
        weights.from_pretrained("gpt2")


def test_pretrained_rejects_other_model(tmp_path):
    write_safetensors({"weight": torch.zeros(3, 3)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="does not hold GPT-2 weights"):
        weights.from_pretrained(str(tmp_path / "model.safetensors"))


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


@pytest.mark.parametrize("case, match", [
    ("int weights", "holds torch.int64 values, not floating-point"),
    ("layer h.x", "'h.x.ln_1.weight' has no layer number"),
    ("no wpe", "no wte.weight, wpe.weight or h.0"),
    ("config without n_head", "gives no n_head"),
    ("wte of one dimension", r"wte.weight has shape \(3200,\), not \(rows, width\)"),
    ("n_head not dividing", "n_head=5 does not divide the width 32"),
])
def test_pretrained_bad_files(tmp_path, case, match):
    tensors = read_safetensors(os.path.join(FIXTURE, "model.safetensors"))
    if case == "int weights":
        tensors["transformer.ln_f.weight"] = tensors["transformer.ln_f.weight"].long()
    elif case == "layer h.x":
        tensors["transformer.h.x.ln_1.weight"] = tensors.pop("transformer.h.0.ln_1.weight")
    elif case == "no wpe":
        del tensors["transformer.wpe.weight"]
    elif case == "config without n_head":
        (tmp_path / "config.json").write_text('{"n_layer": 2}')
    elif case == "wte of one dimension":
        tensors["transformer.wte.weight"] = tensors["transformer.wte.weight"].flatten()
    elif case == "n_head not dividing":
        (tmp_path / "config.json").write_text('{"n_head": 5}')
    write_safetensors(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=match):
        weights.from_pretrained(str(tmp_path / "model.safetensors"))


def test_safetensors_header_nested_too_deep(tmp_path):
    head = b"[" * 100000 + b"]" * 100000
    (tmp_path / "deep.safetensors").write_bytes(struct.pack("<Q", len(head)) + head)
    with pytest.raises(ValueError, match="nested too deeply"):
        read_safetensors(str(tmp_path / "deep.safetensors"))


def gpt2_like_file(path, C=16, seed=0):
    """A 1-layer GPT-2 with GPT-2's real vocabulary (50,257 rows) whose logits are all strongly
    negative, as the real GPT-2's are (-50 to -100): its final hidden state has a large shared
    component (here ln_f's bias, norm 10) and every token row points against it."""
    g = torch.Generator().manual_seed(seed)
    randn = lambda *shape, std=0.02: torch.randn(*shape, generator=g) * std
    shared = torch.nn.functional.normalize(torch.randn(C, generator=g), dim=0)  # (C,)
    t = {"wte.weight": randn(50257, C, std=0.3) - 6.0 * shared, "wpe.weight": randn(64, C),
         "ln_f.weight": torch.ones(C) * 0.5, "ln_f.bias": 10.0 * shared,
         "h.0.ln_1.weight": torch.ones(C), "h.0.ln_1.bias": torch.zeros(C),
         "h.0.ln_2.weight": torch.ones(C), "h.0.ln_2.bias": torch.zeros(C),
         "h.0.attn.c_attn.weight": randn(C, 3 * C, std=0.3), "h.0.attn.c_attn.bias": torch.zeros(3 * C),
         "h.0.attn.c_proj.weight": randn(C, C, std=0.3), "h.0.attn.c_proj.bias": torch.zeros(C),
         "h.0.mlp.c_fc.weight": randn(C, 4 * C, std=0.3), "h.0.mlp.c_fc.bias": torch.zeros(4 * C),
         "h.0.mlp.c_proj.weight": randn(4 * C, C, std=0.3), "h.0.mlp.c_proj.bias": torch.zeros(C)}
    write_safetensors(t, str(path))
    (path.parent / "config.json").write_text('{"n_head": 2}')


def unpadded(model):
    """The same weights in a table of exactly n_tokens rows: nothing to pad, nothing to mask."""
    n = model.config.n_tokens
    other = GPT(GPTConfig(**{**vars(model.config), "vocab_size": n, "n_tokens": 0}))
    sd = model.state_dict()
    sd["transformer.wte.weight"] = sd["lm_head.weight"] = sd["transformer.wte.weight"][:n]
    other.load_state_dict(sd)
    return other.eval()


@pytest.mark.parametrize("task_vocab", [False, True])
def test_padding_rows_never_outscore_real_tokens(tmp_path, task_vocab):
    """The pretrained path pads the embedding table to a multiple of 64; on real GPT-2 weights
    an untrained padding row scores near 0 while every real logit is far below it. The padded
    model's loss at step 0 and its greedy continuation must equal those of the same weights
    without padding (the official code's table of exactly the tokens it uses)."""
    path = tmp_path / "gpt2" / "model.safetensors"
    path.parent.mkdir()
    gpt2_like_file(path)
    records = [dict(question="Tom is a wumpus. Every wumpus is a yumpus. Is Tom a yumpus or zumpus?",
                    steps=["Tom is a wumpus.", "Every wumpus is a yumpus."], answer="Tom is a yumpus.")]
    vocab = data.Vocab.from_records(records) if task_vocab else data.Vocab()
    model = weights.coconut_gpt2(str(path), vocab).eval()
    assert model.config.vocab_size % 64 == 0 and model.config.vocab_size > vocab.n_tokens  # padded
    reference = unpadded(model)
    with torch.no_grad():  # the fixture is GPT-2-like: real logits far below zero
        real = reference.logits(reference(torch.tensor([vocab.encode("Tom is a")])))
        assert real.max() < -20
    ex = data.tokenize(records, vocab)[0]
    for stage in (0, 1, 3):
        batch = data.collate([data.layout(ex, vocab, "coconut", stage)], vocab)
        with torch.no_grad():
            losses = [coconut.lm_loss(m, coconut.latent_forward(m, batch), batch["labels"])
                      for m in (model, reference)]
        assert losses[0].item() == pytest.approx(losses[1].item(), rel=1e-5), stage
        prompt = data.collate([data.layout(ex, vocab, "coconut", stage, prompt_only=True)], vocab)
        out = [coconut.generate(m, prompt, 12, eos_id=-1) for m in (model, reference)]
        assert torch.equal(out[0], out[1]), stage
        assert int(out[0].max()) < vocab.n_tokens


@pytest.mark.parametrize("task_vocab", [False, True])
def test_new_tokens_start_as_copies_of_lt_lt(tmp_path, task_vocab):
    """As in the paper, <bot>, <eot>, <latent> (and <pause>) start as copies of the embedding of
    "<<" (GPT-2 id 16791 in gpt2/encoder.json); every other token keeps its row of the file, in
    a task vocabulary too (its rows renumbered). The dropout asked for is the model's."""
    path = tmp_path / "gpt2" / "model.safetensors"
    path.parent.mkdir()
    gpt2_like_file(path)
    wte = read_safetensors(str(path))["wte.weight"]  # (50257, C)
    records = [dict(question="Tom is a wumpus. Is Tom a wumpus or yumpus?", steps=["Tom is a wumpus."],
                    answer="Tom is a wumpus.")]
    vocab = data.Vocab.from_records(records) if task_vocab else data.Vocab()
    model = weights.coconut_gpt2(str(path), vocab, dropout=0.1)
    assert model.config.dropout == 0.1 and model.training
    ours = model.transformer.wte.weight.detach()
    gpt2_id = (lambda i: i) if vocab.tokens is None else (lambda i: vocab.tokens[i])
    new = [vocab.bot, vocab.eot, vocab.latent, vocab.pause]
    for i in new:
        assert torch.equal(ours[i], wte[16791]), i
    old = [i for i in range(vocab.n_tokens) if i not in new]
    assert torch.equal(ours[old], wte[[gpt2_id(i) for i in old]])
