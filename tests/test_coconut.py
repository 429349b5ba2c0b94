"""The latent loop: fast == reference (loss and every gradient), batched == one by one,
cached generation == uncached, gradient accumulation and DDP == one big batch."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

import coconut
import data
from model import GPT, GPTConfig

RECORDS = [
    dict(question="Tom is a wumpus. Every wumpus is a yumpus. Every yumpus is a zumpus. "
                  "Is Tom a zumpus or rompus?",
         steps=["Tom is a wumpus.", "Every wumpus is a yumpus.", "Every yumpus is a zumpus."],
         answer="Tom is a zumpus."),
    dict(question="Bob is a rompus. Is Bob a rompus or zumpus?",
         steps=["Bob is a rompus."], answer="Bob is a rompus."),
    dict(question="Every yumpus is a rompus. Tom is a yumpus. Is Tom a rompus or wumpus?",
         steps=["Tom is a yumpus.", "Every yumpus is a rompus."], answer="Tom is a rompus."),
]
VOCAB = data.Vocab.from_records(RECORDS)
EXAMPLES = data.tokenize(RECORDS, VOCAB)


def tiny(seed=0):
    torch.manual_seed(seed)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, vocab_size=VOCAB.size, block_size=128))
    with torch.no_grad():  # larger weights than GPT-2's init so that errors show
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model


def batch_of(stages, method="coconut", pad=False, **kw):
    rows = [data.layout(ex, VOCAB, method, s, max_latent_stage=3, pad_latent_to_max=pad, **kw)
            for ex, s in zip(EXAMPLES, stages)]
    return data.collate(rows, VOCAB)


@pytest.mark.parametrize("stages,pad", [
    ((3, 3, 3), True),   # same thoughts, different question lengths
    ((3, 1, 2), False),  # different thought counts in one batch
    ((0, 2, 4), False),  # stage 0 (no thoughts) next to the last stage
])
def test_fast_loop_equals_reference(stages, pad):
    model = tiny()
    batch = batch_of(stages, pad=pad)
    assert batch["n_latent"] > 0
    params = list(model.parameters())
    loss_fast = coconut.lm_loss(model, coconut.latent_forward(model, batch), batch["labels"])
    g_fast = torch.autograd.grad(loss_fast, params)
    loss_ref = coconut.lm_loss(model, coconut.reference_forward(model, batch), batch["labels"])
    g_ref = torch.autograd.grad(loss_ref, params)
    assert abs(loss_fast.item() - loss_ref.item()) < 1e-5
    for (name, _), a, b in zip(model.named_parameters(), g_fast, g_ref):
        assert (a - b).abs().max() < 1e-5 * (1 + b.abs().max()), name


def test_bfloat16_autocast_tracks_float32():
    """train.py --dtype=bfloat16 on CPU (fast where the CPU has AMX): the latent loop under
    autocast gives float32's loss and gradients up to bfloat16 rounding."""
    batch = batch_of((3, 1, 2))
    losses, grads = {}, {}
    for dtype in (torch.float32, torch.bfloat16):
        model = tiny()
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            loss = coconut.lm_loss(model, coconut.latent_forward(model, batch), batch["labels"])
        assert loss.dtype == torch.float32  # the loss is computed in float32 either way
        losses[dtype] = loss.item()
        grads[dtype] = torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(model.parameters()))])
    assert losses[torch.bfloat16] == pytest.approx(losses[torch.float32], rel=0.02)
    a, b = grads[torch.bfloat16], grads[torch.float32]
    assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.99
    assert a.dtype == torch.float32 and not torch.equal(a, b)  # it did run in bfloat16


def test_lm_loss_by_hand():
    """lm_loss is the mean cross-entropy of predicting token t+1 from hidden state t, over the
    positions whose next token has a label: computed here position by position from the
    logits of every position."""
    model = tiny()
    batch = batch_of((1, 2, 0))
    with torch.no_grad():
        h = coconut.latent_forward(model, batch)
        logits = model.lm_head(h)  # (B, T, V) everywhere, unlike lm_loss
        loss, loss_sum = coconut.lm_loss(model, h, batch["labels"]), coconut.lm_loss(model, h, batch["labels"], 100)
    terms = []
    B, T = batch["idx"].shape
    for b in range(B):
        for t in range(T - 1):
            y = int(batch["labels"][b, t + 1])
            if y != -100:
                p = torch.softmax(logits[b, t].double(), -1)[y]
                terms.append(-torch.log(p).item())
    assert len(terms) == sum(len(ex["answer"]) + sum(map(len, ex["steps"][s:])) for ex, s in zip(EXAMPLES, (1, 2, 0)))
    assert loss.item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)
    assert loss_sum.item() == pytest.approx(sum(terms) / 100, rel=1e-5)  # a larger batch's count


def test_gradients_flow_through_thoughts():
    """The gradient of a question token's embedding equals a finite difference of the loss,
    which moves along every path, the one through the fed-back thoughts included: a thought
    cut from the graph (detach) would leave that path out of autograd's gradient."""
    model = tiny().double()
    batch = batch_of((3, 3, 3), pad=True)
    row = int(batch["idx"][0, batch["start"] - 3])  # a question token shortly before <bot>
    y = batch["labels"][:, 1:]

    def loss():  # lm_loss, but in float64 throughout (lm_loss takes its logits to float32)
        h = coconut.latent_forward(model, batch)[:, :-1]
        return torch.nn.functional.cross_entropy(model.lm_head(h[y != -100]), y[y != -100])

    wte = model.transformer.wte.weight
    g = torch.autograd.grad(loss(), wte)[0][row]
    u = torch.randn(wte.size(1), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    eps, diffs = 1e-5, []
    with torch.no_grad():
        for sign in (1, -1):
            wte[row] += sign * eps * u
            diffs.append(loss().item())
            wte[row] -= sign * eps * u
    fd = (diffs[0] - diffs[1]) / (2 * eps)
    assert (g @ u).item() == pytest.approx(fd, rel=1e-6)


def test_hidden_state_is_fed_back():
    """The input embedding of each thought column is exactly the final hidden state of the
    column before it: one plain forward (no cache) over those embeddings reproduces every
    hidden state of the latent loop, and reading <latent> token embeddings instead does not."""
    model = tiny()
    batch = batch_of((3, 1, 2))  # rows with 3, 1 and 2 thoughts
    with torch.no_grad():
        h = coconut.latent_forward(model, batch)
        x = model.transformer.wte(batch["idx"])  # (B, T, C)
        latent = batch["latent"]
        for b, t in latent.nonzero().tolist():
            x[b, t] = h[b, t - 1]
        plain = model(embeds=x, pos=batch["pos"], mask=batch["mask"])
        as_tokens = model(batch["idx"], pos=batch["pos"], mask=batch["mask"])
    mask = batch["mask"]
    assert (plain - h)[mask].abs().max() < 1e-5
    assert (as_tokens - h)[mask].abs().max() > 1e-2


def greedy_uncached(model, ids, thought_at, n_thoughts, max_new, eos):
    """One question, no cache: recompute the whole sequence for every new token."""
    seq, out = list(ids), []
    for _ in range(max_new):
        b = data.collate([data.Row(seq, [-100] * len(seq), thought_at)], VOCAB)
        b["latent"][:, thought_at + n_thoughts:] = False  # generated tokens are plain tokens
        with torch.no_grad():
            h = coconut.reference_forward(model, b)
        tok = int(model.lm_head(h[0, -1]).argmax())
        out.append(tok)
        if tok == eos:
            break
        seq.append(tok)
    return out


@pytest.mark.parametrize("pad", [True, False])
def test_batched_generation_equals_one_by_one_and_uncached(pad):
    model = tiny(1).eval()
    prompts = [data.layout(ex, VOCAB, "coconut", 2, max_latent_stage=3, pad_latent_to_max=pad,
                           prompt_only=True) for ex in EXAMPLES]
    eos = VOCAB.eos
    batched, thoughts = coconut.generate(model, data.collate(prompts, VOCAB), 12, eos, return_thoughts=True)
    for i, (ids, _, at) in enumerate(prompts):
        alone, th = coconut.generate(model, data.collate([prompts[i]], VOCAB), 12, eos, return_thoughts=True)
        row = batched[i].tolist()
        row = row[:row.index(eos) + 1] if eos in row else row
        one = alone[0].tolist()
        one = one[:one.index(eos) + 1] if eos in one else one
        assert row == one
        n = ids.count(VOCAB.latent)
        assert torch.allclose(thoughts[i, :n], th[0, :n], atol=1e-5)
        assert one == greedy_uncached(model, ids, at, n, 12, eos)


def test_generation_variants_by_thought_count():
    model = tiny(2).eval()
    for k in (0, 1, 5):  # any number of thoughts at inference
        prompts = [data.layout(ex, VOCAB, "coconut", 4, max_latent_stage=3, n_latent=k,
                               prompt_only=True) for ex in EXAMPLES]
        tokens, thoughts = coconut.generate(model, data.collate(prompts, VOCAB), 5, VOCAB.eos,
                                            return_thoughts=True)
        assert tokens.shape[0] == 3 and thoughts.shape[1] == k


class ScriptedHead(torch.nn.Module):
    """An LM head whose greedy token is <eos> at step stop[b] of row b, and 5 at every other."""

    def __init__(self, stop, vocab_size, eos):
        super().__init__()
        self.stop, self.V, self.eos, self.calls = stop, vocab_size, eos, 0

    def forward(self, h):  # (B, 1, C) -> (B, 1, V)
        logits = torch.zeros(h.size(0), 1, self.V)
        for b, s in enumerate(self.stop):
            logits[b, 0, self.eos if self.calls == s else 5] = 1.0
        self.calls += 1
        return logits


def test_generation_stops_at_eos():
    """Each row keeps <eos> once it has emitted it, and generation ends when every row has."""
    model = tiny(2).eval()
    prompts = [data.layout(ex, VOCAB, "coconut", 4, max_latent_stage=3, prompt_only=True) for ex in EXAMPLES]
    model.lm_head = ScriptedHead([2, 4, 0], VOCAB.size, VOCAB.eos)
    tokens = coconut.generate(model, data.collate(prompts, VOCAB), 20, VOCAB.eos).tolist()
    e = VOCAB.eos
    assert tokens == [[5, 5, e, e, e], [5, 5, 5, 5, e], [e, e, e, e, e]]
    assert model.lm_head.calls == 5  # no forward after the last row's <eos>


def test_accumulation_equals_one_big_batch():
    model = tiny()
    rows = [data.layout(ex, VOCAB, "coconut", s, max_latent_stage=3) for ex, s in zip(EXAMPLES, (3, 1, 2))]
    coconut.forward_backward(model, [data.collate(rows, VOCAB)])
    g_big = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    coconut.forward_backward(model, [data.collate(rows[:1], VOCAB), data.collate(rows[1:], VOCAB)])
    for a, p in zip(g_big, model.parameters()):
        assert (a - p.grad).abs().max() < 1e-5 * (1 + a.abs().max())


def _ddp_worker(rank, world, port, rows, out):
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    model = tiny()
    mine = rows[rank::world]
    coconut.forward_backward(model, [data.collate(mine, VOCAB)], ddp=True)
    if rank == 0:
        torch.save([p.grad for p in model.parameters()], out)
    dist.destroy_process_group()


def test_ddp_two_processes_equal_one(tmp_path):
    rows = [data.layout(ex, VOCAB, "coconut", s, max_latent_stage=3)
            for ex, s in zip(EXAMPLES + EXAMPLES[:1], (3, 1, 2, 0))]
    model = tiny()
    coconut.forward_backward(model, [data.collate(rows, VOCAB)])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "grads.pt")
    mp.spawn(_ddp_worker, args=(2, port, rows, out), nprocs=2, join=True)
    grads = torch.load(out, weights_only=True)
    for a, p in zip(grads, model.parameters()):
        assert (a - p.grad).abs().max() < 1e-5 * (1 + a.abs().max())
