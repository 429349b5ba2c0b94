"""
GPT-2, written out by hand, with an explicit KV cache that Coconut's latent loop runs through.

Two differences from nanoGPT's model.py, both needed by Coconut:
- forward() takes token ids *or* input embeddings (a continuous thought is an embedding),
  explicit position ids and a padding mask, and returns the final hidden states (after ln_f);
  logits are a separate call (lm_head), so training pays for them only where there are labels.
- a KVCache that owns the keys, values and padding mask of every position seen so far.
And logits() never scores the rows that only pad the embedding table to a multiple of 64.

    python -c "from model import GPT, GPTConfig; print(GPT(GPTConfig()).num_params())"

Pretrained GPT-2 weights are read by weights.py.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    block_size: int = 1024    # longest sequence (number of learned position embeddings)
    vocab_size: int = 50304   # GPT-2's 50257 ids + Coconut's 4, padded to a multiple of 64
    n_tokens: int = 0         # ids that are tokens; the rows after them only pad (0: every row)
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0


class KVCache:
    """Keys and values of every position seen so far, one (B, nh, T, hs) pair per layer.

    All rows of a batch share the slot index (the collator aligns them); left padding is kept
    in `valid` (B, T_max): a key whose slot is not valid is never attended to. Each forward
    first calls extend() for its T positions, then every layer calls update().

    Two storage modes:
    - generation (no gradients): buffers allocated once at T_max, written in place by slot.
    - training (gradients flow through the cached keys and values into earlier passes): each
      pass concatenates its keys onto the previous ones, making a new tensor. Writing in place
      into a preallocated buffer would modify a tensor that autograd saved for the backward of
      an earlier pass (its attention read that buffer), and backward would fail or be wrong.
      A latent loop makes only a few passes, so the copies are cheap.
    """

    def __init__(self, config, B, T_max, device, training=False):
        self.training = training
        self.T_max = T_max
        self.start, self.end = 0, 0  # the current pass owns slots [start, end)
        self.k = [None] * config.n_layer  # allocated at the first write, in the keys' dtype
        self.v = [None] * config.n_layer
        self.valid = torch.zeros(B, T_max, dtype=torch.bool, device=device)

    def extend(self, mask):
        """Take the next T slots for a pass whose padding mask is `mask` (B, T); return the
        mask of every slot so far (B, end)."""
        T = mask.size(1)
        if self.end + T > self.T_max:
            raise ValueError(f"the cache holds {self.T_max} positions; {self.end} + {T} do not fit")
        self.start, self.end = self.end, self.end + T
        self.valid[:, self.start:self.end] = mask
        return self.valid[:, :self.end]

    def rewind(self, end):
        """Forget every slot from `end` on (bench.py reruns one thought in the same slot)."""
        self.start = self.end = end

    def update(self, layer, k, v):
        """Store this pass's k, v (B, nh, T, hs); return all keys and values so far."""
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
        self.k[layer][:, :, self.start:self.end] = k  # in place: no allocation per new token
        self.v[layer][:, :, self.start:self.end] = v
        return self.k[layer][:, :, :self.end], self.v[layer][:, :, :self.end]


def attention_mask(valid, start, T):
    """(B, 1, T, L) bool: query slot start+i may read key slot j if j <= start+i and j is not
    padding (valid (B, L) is False on padding).

    Every query may also read itself, so a padding query never has an empty row (an all-masked
    softmax is NaN, and NaN times a zero weight still poisons later layers).
    """
    q_slot = torch.arange(start, start + T, device=valid.device)[:, None]  # (T, 1)
    k_slot = torch.arange(valid.size(1), device=valid.device)[None, :]  # (1, L)
    allowed = valid[:, None, :] & (k_slot <= q_slot)  # (B, T, L)
    return (allowed | (k_slot == q_slot))[:, None]  # (B, 1, T, L)


class CausalSelfAttention(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)  # q, k, v in one matmul
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.dropout = config.dropout

    def forward(self, x, attn_mask, cache=None, layer=0):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, nh, L, hs): every position so far
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
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)
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

    def logits(self, h):
        """Next-token logits (..., vocab_size) of final hidden states h (..., C). Rows past
        n_tokens only pad the table, and get -inf: GPT-2's real logits sit around -50 to -100
        (its final hidden state has a large shared component), so an untrained padding row,
        scoring near 0, would otherwise win every argmax and take the softmax's mass."""
        logits = self.lm_head(h)
        if 0 < self.config.n_tokens < logits.size(-1):
            logits[..., self.config.n_tokens:] = float("-inf")  # the matmul's output: safe in place
        return logits

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
        start = 0 if cache is None else cache.end
        if pos is None:
            if start + T > self.config.block_size:
                raise ValueError(f"{start + T} tokens do not fit the model's context of "
                                 f"block_size={self.config.block_size}; shorten the input")
            pos = torch.arange(start, start + T, device=x.device).expand(B, T)
        x = x + self.transformer.wpe(pos)  # (B, T, C)
        x = F.dropout(x, self.config.dropout, self.training)
        attn_mask = None  # no padding and no cache: plain causal attention
        if mask is not None or cache is not None:
            valid = torch.ones(B, T, dtype=torch.bool, device=x.device) if mask is None else mask.bool()
            if cache is not None:
                valid = cache.extend(valid)  # (B, start + T): the padding of every slot so far
            attn_mask = attention_mask(valid, start, T)  # (B, 1, T, start + T)
        for i, block in enumerate(self.transformer.h):
            x = block(x, attn_mask, cache, i)
        return self.transformer.ln_f(x)  # (B, T, C)
