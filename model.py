"""
GPT-2, written out by hand, with an explicit KV cache that Coconut's latent loop runs through.

Differences from nanoGPT's model.py, all needed by Coconut:
- forward() takes token ids *or* input embeddings (a continuous thought is an embedding),
  explicit position ids and a padding mask, and returns the final hidden states (after ln_f);
  logits are a separate call (lm_head) so training pays for them only where there are labels.
- a KVCache that the model reads and writes by position, for generation and for training.

    python -c "from model import GPT; m = GPT.from_pretrained('gpt2')"   # needs the hub or a file
"""
import ctypes
import json
import math
import os
import struct
import tempfile
import urllib.request
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    block_size: int = 1024    # longest sequence (number of learned position embeddings)
    vocab_size: int = 50304   # GPT-2's 50257 ids + Coconut's 4, padded to a multiple of 64
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0


class KVCache:
    """Keys and values of every position seen so far, one (B, nh, T, hs) pair per layer.

    All rows of a batch share the slot index (the collator aligns them); left padding is
    described by `valid` (B, T_max): a key whose slot is not valid is never attended to.

    Two storage modes:
    - generation (no gradients): buffers allocated once at T_max, written in place by slot.
    - training (gradients flow through the cached keys and values into earlier passes): each
      pass concatenates its keys onto the previous ones, making a new tensor. Writing in place
      into a preallocated buffer would modify a tensor that autograd saved for the backward of
      an earlier pass (its attention read that buffer), and backward would fail or be wrong.
      A latent loop makes at most a few dozen passes, so the copies are cheap.
    """

    def __init__(self, config, B, T_max, device, training=False):
        self.training = training
        self.end = 0  # slots [0, end) are filled
        self.T_max = T_max
        self.k = [None] * config.n_layer  # allocated at the first write, in the keys' dtype
        self.v = [None] * config.n_layer
        self.valid = torch.zeros(B, T_max, dtype=torch.bool, device=device)

    def update(self, layer, k, v):
        """Store k, v (B, nh, T, hs) at slots [end, end+T); return all keys/values so far."""
        if self.training:
            if self.k[layer] is not None:
                k = torch.cat([self.k[layer], k], dim=2)  # a new tensor: autograd-safe
                v = torch.cat([self.v[layer], v], dim=2)
            # contiguous like every later cat, so torch.compile sees one layout, not two
            self.k[layer], self.v[layer] = k.contiguous(), v.contiguous()
            return self.k[layer], self.v[layer]
        if self.k[layer] is None:
            B, nh, _, hs = k.shape
            self.k[layer] = k.new_zeros(B, nh, self.T_max, hs)
            self.v[layer] = v.new_zeros(B, nh, self.T_max, hs)
        start, stop = self.end, self.end + k.size(2)
        self.k[layer][:, :, start:stop] = k  # in place: no allocation per generated token
        self.v[layer][:, :, start:stop] = v
        return self.k[layer][:, :, :stop], self.v[layer][:, :, :stop]


class Linear(nn.Linear):
    """nn.Linear that can add its weight's gradient straight into .grad (grad_in_place = True).

    Autograd makes a weight's gradient once per use, as a new weight-sized tensor, and sums
    them. The latent loop uses every weight once per pass, and a thought's pass has one position
    per row: for a 3072 x 768 weight and 4 rows, writing that gradient and then adding it costs
    more memory traffic than the pass's matmuls. In place it is one addmm_ into .grad per pass
    (Megatron-LM's gradient_accumulation_fusion does the same on GPUs). For bench.py's step
    (GPT-2 small, batch 4, 6 thoughts, 2 CPU cores) it took the ratio to the CoT-equivalent
    step from 1.32x to 1.25x (medians of 8 alternating steps). train.py and bench.py turn it
    on for eager float32 (the CPU default); torch.compile and autocast keep autograd's way.
    """
    grad_in_place = False

    def forward(self, x):
        if self.grad_in_place and torch.is_grad_enabled():
            return LinearGradInPlace.apply(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)


class LinearGradInPlace(torch.autograd.Function):
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
        return dy @ weight, None, dy2.sum(0)  # dx (..., in); W's is done; the bias's (out,)


class CausalSelfAttention(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = Linear(config.n_embd, 3 * config.n_embd)  # q, k, v in one matmul
        self.c_proj = Linear(config.n_embd, config.n_embd)
        self.dropout = config.dropout

    def forward(self, x, attn_mask, cache=None, layer=0):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, nh, end+T, hs)
        dropout_p = self.dropout if self.training else 0.0
        if attn_mask is None:  # no padding, no cache: the fast causal kernel
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout_p)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return F.dropout(self.c_proj(y), dropout_p, self.training)


class MLP(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.c_fc = Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = Linear(4 * config.n_embd, config.n_embd)
        self.dropout = config.dropout

    def forward(self, x):
        x = F.gelu(self.c_fc(x), approximate="tanh")  # GPT-2's GELU is the tanh approximation
        return F.dropout(self.c_proj(x), self.dropout, self.training)


class Block(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x, attn_mask, cache=None, layer=0):
        x = x + self.attn(self.ln_1(x), attn_mask, cache, layer)  # pre-LayerNorm residual blocks
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # tied input and output embeddings
        self.apply(self._init_weights)
        # GPT-2 scales the init of the projections into the residual stream by 1/sqrt(2 n_layer)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def set_grad_in_place(self, on=True):
        """Every block's Linear adds its weight gradient into .grad itself (see Linear)."""
        for m in self.modules():
            if isinstance(m, Linear):
                m.grad_in_place = on

    def num_params(self):
        return sum(p.numel() for p in self.parameters()) - self.transformer.wpe.weight.numel()

    def forward(self, idx=None, embeds=None, pos=None, mask=None, cache=None):
        """Final hidden states (B, T, C) of token ids idx (B, T) or input embeddings (B, T, C).

        pos:   (B, T) position ids (default 0..T-1 after what the cache holds).
        mask:  (B, T) bool, False on padding; padding is never attended to.
        cache: a KVCache; these T positions are appended after the ones it holds.
        """
        x = self.transformer.wte(idx) if embeds is None else embeds  # (B, T, C)
        B, T, _ = x.shape
        if pos is None:
            start = 0 if cache is None else cache.end
            if start + T > self.config.block_size:
                raise ValueError(f"{start + T} tokens do not fit the model's context of "
                                 f"block_size={self.config.block_size}; shorten the input")
            pos = torch.arange(start, start + T, device=x.device).expand(B, T)
        x = x + self.transformer.wpe(pos)  # (B, T, C)
        x = F.dropout(x, self.config.dropout, self.training)
        attn_mask = None
        if mask is not None or cache is not None:
            attn_mask = self.attention_mask(mask, cache, B, T, x.device)
        for i, block in enumerate(self.transformer.h):
            x = block(x, attn_mask, cache, i)
        if cache is not None:
            cache.end += T
        return self.transformer.ln_f(x)  # (B, T, C)

    @staticmethod
    def attention_mask(mask, cache, B, T, device):
        """(B, 1, T, L) bool: query slot i may read key slot j if j <= i and j is not padding.

        Every query may also read itself, so a padding query never has an empty row (an
        all-masked softmax is NaN, and NaN times a zero weight still poisons later layers).
        """
        start = 0 if cache is None else cache.end
        valid = torch.ones(B, T, dtype=torch.bool, device=device) if mask is None else mask.bool()
        if cache is not None:
            cache.valid[:, start:start + T] = valid
            valid = cache.valid[:, :start + T]  # (B, L)
        q_slot = torch.arange(start, start + T, device=device)[:, None]  # (T, 1)
        k_slot = torch.arange(start + T, device=device)[None, :]  # (1, L)
        allowed = valid[:, None, :] & (k_slot <= q_slot)  # (B, T, L)
        return (allowed | (k_slot == q_slot))[:, None]  # (B, 1, T, L)

    # -------------------------------------------------------------------------
    # Pretrained GPT-2 weights, read from Hugging Face's model.safetensors layout

    @classmethod
    def from_pretrained(cls, name_or_path, vocab_size=None, dropout=0.0):
        """GPT-2 weights from a model name (downloaded once) or a local model.safetensors.

        vocab_size pads the embedding table (GPT-2's 50257 rows -> 50304 for the new tokens).
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
        n_layer = 1 + max((int(k.split(".")[1]) for k in tensors if k.startswith("h.")), default=-1)
        if "wte.weight" not in tensors or n_layer == 0:
            raise ValueError(f"{path} does not hold GPT-2 weights (no wte.weight or h.0.*)")
        n_vocab, n_embd = tensors["wte.weight"].shape
        n_head = pretrained_n_head(path, name_or_path, n_embd)
        config = GPTConfig(block_size=tensors["wpe.weight"].shape[0], n_layer=n_layer,
                           n_head=n_head, n_embd=n_embd, dropout=dropout,
                           vocab_size=max(vocab_size or n_vocab, n_vocab))
        model = cls(config)
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


PRETRAINED = {"gpt2": 12, "gpt2-medium": 16, "gpt2-large": 20, "gpt2-xl": 25}  # name -> n_head


def pretrained_n_head(path, name, n_embd):
    """n_head is not in the weights: take it from config.json beside them, or from the name."""
    cfg = os.path.join(os.path.dirname(path), "config.json")
    if os.path.isfile(cfg):
        with open(cfg) as f:
            return int(json.load(f)["n_head"])
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
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f, tqdm(total=total, unit="B", unit_scale=True, desc=name) as bar:
            while chunk := response.read(1 << 20):
                f.write(chunk)
                bar.update(len(chunk))
        os.replace(tmp, path)  # atomic: a killed download never leaves a half file at `path`
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


# -----------------------------------------------------------------------------
# CPU memory: glibc gives every freed block over 32 MB (and the heap's free top) back to the
# OS, so each CPU training step of a GPT-2-sized model page-faults its large tensors (the
# embedding's gradient alone is 154 MB) in again. Keeping them took a latent-loop step (GPT-2
# small, batch 4, 6 thoughts, 2 cores) from 5.2 to 4.4 s; the CoT-equivalent step, 3.5 s, gained
# little (bench.py measures both).


def keep_freed_memory():
    """Make glibc keep freed memory for reuse: no mmap per large block, no trimming. True if
    set; False where the C library is not glibc (macOS, musl), which is then left alone."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # from glibc's malloc.h
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, -1))  # -1: never trim (man mallopt)


# -----------------------------------------------------------------------------
# safetensors: 8-byte little-endian header length, a JSON header, then raw little-endian data.
# A small reader that trusts nothing in the file (no `safetensors` package, nothing unpickled).

DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
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
        if not isinstance(header, dict):
            raise bad("header is not a JSON object")
        header.pop("__metadata__", None)
        data_len, spans, tensors = size - 8 - n, [], {}
        for name, info in header.items():
            if not (isinstance(info, dict) and {"dtype", "shape", "data_offsets"} <= info.keys()):
                raise bad(f"tensor {name!r} lacks dtype, shape or data_offsets")
            dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
            if dtype not in DTYPES:
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
            nbytes = math.prod(shape) * DTYPES[dtype].itemsize
            if end - begin != nbytes:
                raise bad(f"tensor {name!r} spans {end - begin} bytes, but {dtype} {shape} "
                          f"needs {nbytes}")
            spans.append((begin, end, name))
            f.seek(8 + n + begin)
            buf = bytearray(f.read(nbytes))
            t = torch.frombuffer(buf, dtype=DTYPES[dtype]) if nbytes else torch.empty(0, dtype=DTYPES[dtype])
            tensors[name] = t.reshape(shape)
        spans.sort()
        for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
            if b1 < e0:
                raise bad(f"tensors {n0!r} and {n1!r} overlap")
    return tensors


def write_safetensors(tensors, path):
    """Write {name: tensor} in the safetensors layout (atomically)."""
    inverse = {v: k for k, v in DTYPES.items()}
    header, offset, blobs = {}, 0, []
    for name, t in tensors.items():
        blob = t.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": inverse[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)  # the format pads the header to 8 bytes with spaces
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head)
        for blob in blobs:
            f.write(blob)
    os.replace(tmp, path)
