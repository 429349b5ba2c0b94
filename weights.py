"""
Pretrained GPT-2 weights, read from Hugging Face's model.safetensors layout (no `transformers`,
no `safetensors` package, nothing unpickled).

    python -c "import weights; m = weights.from_pretrained('gpt2')"   # needs the hub or a file
"""
import json
import math
import os
import struct
import urllib.request

import torch

import data
from files import atomic_write
from model import GPT, GPTConfig


def from_pretrained(name_or_path, vocab_size=None, dropout=0.0):
    """GPT-2 weights from a model name (downloaded once) or a local model.safetensors.

    vocab_size pads the embedding table (GPT-2's 50257 rows -> 50304 for the new tokens); the
    rows past the file's are never predicted until n_tokens is raised to cover them.
    """
    path = name_or_path
    if name_or_path in PRETRAINED:
        path = download_gpt2(name_or_path)
    elif os.path.isdir(path):
        path = os.path.join(path, "model.safetensors")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no GPT-2 weights at {path!r}: pass one of "
                                f"{sorted(PRETRAINED)} or the path of a model.safetensors")
    tensors = read_safetensors(path)
    tensors = {k.removeprefix("transformer."): v for k, v in tensors.items()}
    layers = [k.split(".")[1] for k in tensors if k.startswith("h.")]
    if not all(n.isdigit() for n in layers):
        raise ValueError(f"{path}: a tensor name {next(k for k in tensors if k.startswith('h.') and not k.split('.')[1].isdigit())!r} "
                         "has no layer number (h.0., h.1., ...)")
    n_layer = 1 + max(map(int, layers), default=-1)
    if "wte.weight" not in tensors or "wpe.weight" not in tensors or n_layer == 0:
        raise ValueError(f"{path} does not hold GPT-2 weights (no wte.weight, wpe.weight or h.0.*)")
    ints = [k for k, t in tensors.items() if not t.is_floating_point()]
    if ints:
        raise ValueError(f"{path}: tensor {ints[0]!r} holds {tensors[ints[0]].dtype} values, not "
                         "floating-point weights")
    for k in ("wte.weight", "wpe.weight"):
        if tensors[k].dim() != 2:
            raise ValueError(f"{path}: {k} has shape {tuple(tensors[k].shape)}, not (rows, width)")
    n_vocab, n_embd = tensors["wte.weight"].shape
    n_head = pretrained_n_head(path, name_or_path, n_embd)
    if n_head < 1 or n_embd % n_head:
        raise ValueError(f"n_head={n_head} does not divide the width {n_embd}: the config.json "
                         "beside the weights is not this model's")
    config = GPTConfig(block_size=tensors["wpe.weight"].shape[0], n_layer=n_layer,
                       n_head=n_head, n_embd=n_embd, dropout=dropout,
                       vocab_size=max(vocab_size or n_vocab, n_vocab), n_tokens=n_vocab)
    model = GPT(config)
    ours = {k.removeprefix("transformer."): v for k, v in model.state_dict().items()}
    del ours["lm_head.weight"]  # tied to wte
    got = {k for k in tensors if not k.endswith((".attn.bias", ".attn.masked_bias"))}
    got.discard("lm_head.weight")  # some files store the tied copy too
    if got != set(ours):
        raise ValueError(f"{path}: unexpected tensors {sorted(got - set(ours))[:5]}, "
                         f"missing {sorted(set(ours) - got)[:5]}")
    with torch.no_grad():
        for k, target in ours.items():
            w = tensors[k]
            if k.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")):
                w = w.t()  # HF's Conv1D stores (in, out); nn.Linear stores (out, in)
            if k == "wte.weight":
                target = target[:n_vocab]  # rows for new tokens keep their random init
            if w.shape != target.shape:
                raise ValueError(f"{path}: tensor {k} has shape {tuple(w.shape)}, "
                                 f"expected {tuple(target.shape)}")
            target.copy_(w)
    return model


def coconut_gpt2(init_from, vocab, dropout=0.0):
    """GPT-2 for Coconut: rows for the new tokens (<bot>, <eot>, <latent>, <pause>) start as a
    copy of "<<", as in the paper; with a task vocabulary only its rows of wte are kept. The
    rows that pad the table to a multiple of 64 are never predicted (model.logits)."""
    model = from_pretrained(init_from, vocab_size=data.Vocab().size, dropout=dropout)
    with torch.no_grad():
        wte = model.transformer.wte.weight  # (50304, C)
        wte[[data.BOT, data.EOT, data.LATENT, data.PAUSE]] = wte[data.encode("<<")[0]].clone()
        model.config.n_tokens = vocab.n_tokens
        if vocab.tokens is None:
            return model
        rows = wte[vocab.tokens]  # (n_tokens, C): the GPT-2 ids of a task vocabulary
        tied = ("lm_head.weight", "transformer.wte.weight")
        sd = {k: v for k, v in model.state_dict().items() if k not in tied}
        model = GPT(GPTConfig(**{**vars(model.config), "vocab_size": vocab.size}))
        model.load_state_dict(sd, strict=False)
        model.transformer.wte.weight[:len(rows)] = rows
    return model


PRETRAINED = {"gpt2": 12, "gpt2-medium": 16, "gpt2-large": 20, "gpt2-xl": 25}  # name -> n_head


def pretrained_n_head(path, name, n_embd):
    """n_head is not in the weights: take it from config.json beside them, or from the name."""
    cfg = os.path.join(os.path.dirname(path), "config.json")
    if os.path.isfile(cfg):
        try:
            with open(cfg) as f:
                return int(json.load(f)["n_head"])
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{cfg} gives no n_head ({type(e).__name__}: {e}); write "
                             '{"n_head": N} there, or remove it to infer n_head from the width') from None
    if name in PRETRAINED:
        return PRETRAINED[name]
    by_width = {768: 12, 1024: 16, 1280: 20, 1600: 25}
    if n_embd not in by_width:
        raise ValueError(f"{path}: cannot tell n_head for width {n_embd}; put the model's "
                         "config.json (with n_head) beside the weights")
    return by_width[n_embd]


def download_gpt2(name, cache_dir=None):
    """Download {name}/model.safetensors from the Hugging Face hub once; return its path."""
    cache_dir = cache_dir or os.environ.get("COCONUT_CACHE",
                                            os.path.join(os.path.expanduser("~"), ".cache", "coconut"))
    path = os.path.join(cache_dir, name, "model.safetensors")
    if os.path.isfile(path):
        return path
    url = f"https://huggingface.co/{name}/resolve/main/model.safetensors"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        response = urllib.request.urlopen(url, timeout=10)
    except OSError as e:
        raise RuntimeError(f"could not download {url} ({e}). Offline? Fetch model.safetensors "
                           f"on a machine with network and pass its path instead of {name!r}, "
                           "e.g. --init_from=/path/to/model.safetensors") from None
    from tqdm import tqdm
    total = int(response.headers.get("Content-Length", 0)) or None
    # atomic: a killed download never leaves a half file at `path`
    with atomic_write(path, "wb") as f, tqdm(total=total, unit="B", unit_scale=True, desc=name) as bar:
        while chunk := response.read(1 << 20):
            f.write(chunk)
            bar.update(len(chunk))
    return path


# -----------------------------------------------------------------------------
# safetensors: 8-byte little-endian header length, a JSON header, then raw little-endian data.
# A small reader that trusts nothing in the file (no `safetensors` package, nothing unpickled).

SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                      "U8": torch.uint8, "BOOL": torch.bool}


def read_safetensors(path):
    """{name: tensor} from a .safetensors file; ValueError naming the problem on a bad file."""
    def bad(why):
        return ValueError(f"{path} is not a valid safetensors file: {why}")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise bad("shorter than its 8-byte header length")
        (n,) = struct.unpack("<Q", raw)
        if n > size - 8:
            raise bad(f"header length {n} runs past the end of the file ({size} bytes)")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise bad(f"header is not JSON ({e})") from None
        except RecursionError:
            raise bad("header is nested too deeply") from None
        if not isinstance(header, dict):
            raise bad("header is not a JSON object")
        header.pop("__metadata__", None)
        data_len, spans, tensors = size - 8 - n, [], {}
        for name, info in header.items():
            if not (isinstance(info, dict) and {"dtype", "shape", "data_offsets"} <= info.keys()):
                raise bad(f"tensor {name!r} lacks dtype, shape or data_offsets")
            dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
            if dtype not in SAFETENSORS_DTYPES:
                raise bad(f"tensor {name!r} has unknown dtype {dtype!r}")
            if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
                raise bad(f"tensor {name!r} has a bad shape {shape!r}")
            if not (isinstance(offsets, list) and len(offsets) == 2
                    and all(type(o) is int for o in offsets) and 0 <= offsets[0] <= offsets[1]):
                raise bad(f"tensor {name!r} has bad data_offsets {offsets!r}")
            begin, end = offsets
            if end > data_len:
                raise bad(f"tensor {name!r} ends at byte {end}, past the data ({data_len} bytes); "
                          "the file is truncated")
            nbytes = math.prod(shape) * SAFETENSORS_DTYPES[dtype].itemsize
            if end - begin != nbytes:
                raise bad(f"tensor {name!r} spans {end - begin} bytes, but {dtype} {shape} "
                          f"needs {nbytes}")
            spans.append((begin, end, name))
            f.seek(8 + n + begin)
            buf = bytearray(f.read(nbytes))
            t = torch.frombuffer(buf, dtype=SAFETENSORS_DTYPES[dtype]) if nbytes else torch.empty(0, dtype=SAFETENSORS_DTYPES[dtype])
            tensors[name] = t.reshape(shape)
        spans.sort()
        for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
            if b1 < e0:
                raise bad(f"tensors {n0!r} and {n1!r} overlap")
    return tensors


def write_safetensors(tensors, path):
    """Write {name: tensor} in the safetensors layout (atomically)."""
    inverse = {v: k for k, v in SAFETENSORS_DTYPES.items()}
    header, offset, blobs = {}, 0, []
    for name, t in tensors.items():
        blob = t.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": inverse[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)  # the format pads the header to 8 bytes with spaces
    with atomic_write(path, "wb") as f:  # no half-written file stays behind
        f.write(struct.pack("<Q", len(head)) + head)
        for blob in blobs:
            f.write(blob)
