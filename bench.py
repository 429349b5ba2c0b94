"""
Measured speed of Coconut's latent loop, each figure against its baseline, in one run:

1. a training step at the last stage (6 thoughts) through the cached latent loop, against the
   same tokens as one plain forward (CoT-equivalent) and against the recompute-per-thought loop
   (on CUDA also in the other precision: exact float32 against bfloat16 autocast);
2. answering N questions with batched, KV-cached generation, against one question at a time
   with the whole prefix recomputed for every new token (the official implementation's way);
3. one continuous thought at batch 1 (eager, and compiled on CUDA) next to its bandwidth floor;
4. the quick start's small model: its training step at every stage, with GPT-2's BPE ids (the
   config) and with whole-word tokens, and the training time each projects.

Random weights: this measures speed only. The last line printed is one JSON object.

    python bench.py                  # GPT-2 small, ProsQA lengths: ~5 minutes on 2 CPU cores
    python bench.py --quick=True     # tiny sizes: a few seconds
    python bench.py --device=cuda    # bf16 autocast (the step in exact fp32 too), MFU, CUDA graphs
"""
import json
import os
import random
import sys
import time
from contextlib import contextmanager
from statistics import median

import torch

import coconut
import data
import devices
import speedups
import tasks
import configurator
from configurator import configure
from model import GPT, GPTConfig, KVCache

# -----------------------------------------------------------------------------
# default config values: GPT-2 small (124M) on ProsQA-length questions
quick = False  # tiny sizes (QUICK below) for a run of seconds; flags still override them
device = "auto"  # 'auto', 'cpu', 'cuda', 'cuda:1'
dtype = "auto"  # 'auto' (bfloat16 autocast on CUDA, else float32), 'float32', 'bfloat16'
compile = True  # also time the thought step under torch.compile with CUDA graphs (CUDA only)
n_layer = 12
n_head = 12
n_embd = 768
question_len = 360  # ProsQA questions are ~360 GPT-2 tokens long
question_spread = 40  # each question's length is drawn from question_len +- question_spread
n_latent = 6  # ProsQA's last stage: 6 steps x 1 thought per step
batch_size = 0  # training rows; 0: 4 on CPU, 16 on CUDA
n_gen = 0  # questions to answer; 0: 4 on CPU, 32 on CUDA
max_new_tokens = 64  # every question gets exactly this many new tokens (no stop at <eos>)
burn_in = 1  # untimed calls before each measurement
repeats = 5  # timed calls per measurement; the median is reported
latent_iters = 50  # thoughts per timed call of the latent step
peak_flops = 0.0  # the device's peak FLOP/s for MFU; 0: looked up by device name (GPUs only)
mem_bandwidth = 0.0  # the device's memory bandwidth in bytes/s; 0: looked up by device name
quickstart_steps = 10  # 4.: training steps per timed call, per stage, per tokenizer (0: skip it)
seed = 0
# -----------------------------------------------------------------------------
QUICK = dict(n_layer=2, n_head=2, n_embd=64, question_len=48, question_spread=8, batch_size=2,
             n_gen=2, max_new_tokens=8, repeats=2, latent_iters=5, quickstart_steps=2)
config_keys = [k for k, v in globals().items() if not k.startswith("_") and isinstance(v, (int, float, bool, str))]
defaults = {k: globals()[k] for k in config_keys}
settings = configure(defaults, sys.argv[1:])
if settings["quick"]:  # the tiny sizes first, so flags given on the command line still win
    settings = configure({**defaults, **QUICK}, sys.argv[1:])
globals().update(settings)
# -----------------------------------------------------------------------------

# datasheet figures, matched by substring of the GPU's name, in this order
PEAK_BF16_FLOPS = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense
MEM_BANDWIDTH = {"H100 PCIe": 2.0e12, "H100": 3.35e12, "H200": 4.8e12, "A100": 2.0e12}  # bytes/s

device, ptdtype, autocast = devices.setup(device, dtype)
device_type = device.split(":")[0]
dtype = str(ptdtype).removeprefix("torch.")
batch_size = batch_size or (16 if device_type == "cuda" else 4)
n_gen = n_gen or (32 if device_type == "cuda" else 4)
# the recompute baselines take minutes a call on CPU, and each call is dozens of full passes
# through kernels the measurements before them warmed up: there, one timed call and no burn-in
slow = dict(burn_in=burn_in, repeats=repeats) if device_type == "cuda" else dict(burn_in=0, repeats=1)
if device_type == "cuda":
    device_name = torch.cuda.get_device_name(device)
else:
    device_name = f"{device_type} ({torch.get_num_threads()} threads)"


def lookup(table, given):
    """A setting if given (> 0), else the datasheet figure of this GPU, else None."""
    if given > 0:
        return given
    return next((v for k, v in table.items() if k in device_name), None) if device_type == "cuda" else None


peak = lookup(PEAK_BF16_FLOPS, peak_flops)
bandwidth = lookup(MEM_BANDWIDTH, mem_bandwidth)


def sync():
    if device_type == "cuda":
        torch.cuda.synchronize()


def timed(*fns, burn_in=burn_in, repeats=repeats):
    """[(seconds of each timed call, last result)] of each fn over `repeats` timed calls after
    `burn_in`; the fns take turns, so that a change in load from other processes hits all alike."""
    times, outs = [[] for _ in fns], [None] * len(fns)
    for i in range(burn_in + repeats):
        for j, fn in enumerate(fns):
            sync()
            t0 = time.perf_counter()
            outs[j] = fn()
            sync()
            if i >= burn_in:
                times[j].append(time.perf_counter() - t0)
    return list(zip(times, outs))


# -----------------------------------------------------------------------------
# ProsQA-shaped examples of random tokens, laid out at the last stage: question, <bot>,
# n_latent x <latent>, <eot>, answer (every language step replaced by a thought)

torch.manual_seed(seed)
rng = random.Random(seed)
vocab = data.Vocab()  # GPT-2's ids; the markers come after <|endoftext|>
rand_ids = lambda n: [rng.randrange(data.EOS) for _ in range(n)]  # ordinary tokens, never a marker
examples = [dict(question=rand_ids(rng.randint(question_len - question_spread, question_len + question_spread)),
                 steps=[rand_ids(8)] * n_latent,  # dropped at the last stage: only their count matters
                 answer=rand_ids(9) + [vocab.eos])
            for _ in range(max(batch_size, n_gen))]
last_stage = dict(method="coconut", stage=n_latent + 1, max_latent_stage=n_latent)
batch = data.collate([data.layout(ex, vocab, **last_stage) for ex in examples[:batch_size]], vocab, device)
cot_batch = dict(batch, latent=torch.zeros_like(batch["latent"]), n_latent=0)  # <latent> as a token
prompts = [data.layout(ex, vocab, **last_stage, prompt_only=True) for ex in examples[:n_gen]]
gen_batch = data.collate(prompts, vocab, device)

model = GPT(GPTConfig(vocab_size=vocab.size, n_tokens=vocab.n_tokens, n_layer=n_layer, n_head=n_head,
                      n_embd=n_embd)).to(device)
speedups.enable(model, device_type, eager_float32=ptdtype == torch.float32)  # as train.py does
B, T = batch["idx"].shape
n_tokens = int(batch["mask"].sum())  # real tokens, padding excluded
n_labels = int((batch["labels"][:, 1:] != -100).sum())  # the answer's tokens: the loss's positions
load = lambda: round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None  # others' work skews timings
print(f"device {device_name}, {dtype}; model {model.num_params() / 1e6:.1f}M parameters "
      f"({n_layer} layers, {n_head} heads, {n_embd} wide); load average {load()}")

# -----------------------------------------------------------------------------
# 1. training step: forward, backward, AdamW. Eager on every device: train.py compiles the model
# on CUDA, but the latent loop compiles into several graphs (no cache, first pass, later passes)
# of about a minute each, too long for a bench; the thought step in 3. shows what compiling buys

optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=device_type == "cuda")


def train_step(forward, batch, precision=autocast):
    with precision:
        loss = coconut.lm_loss(model, forward(model, batch), batch["labels"])
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def mfu(seconds):
    """nanoGPT's estimate: 6 FLOPs per parameter per token (forward + backward) plus attention,
    over the peak bf16 FLOP/s. lm_loss runs the LM head only where there is a label, so the
    head counts at labelled positions only (counting it everywhere would overstate MFU ~1.4x)."""
    if peak is None:
        return None
    head = model.lm_head.weight.numel()
    L, H, Q = n_layer, n_head, n_embd // n_head
    flops = (6 * (model.num_params() - head) + 12 * L * H * Q * T) * n_tokens + 6 * head * n_labels
    return flops / seconds / peak


model.train()
(ts_cot, _), (ts_coconut, _) = timed(lambda: train_step(coconut.latent_forward, cot_batch),
                                     lambda: train_step(coconut.latent_forward, batch))
t_cot, t_coconut = median(ts_cot), median(ts_coconut)
# the median of each round's ratio: a round times the two steps back to back, so a drift in the
# machine's speed over the run (5% on a shared CPU) cancels in it, not in a ratio of medians
ratios_vs_cot = [a / b for a, b in zip(ts_coconut, ts_cot)]
[(ts_reference, _)] = timed(lambda: train_step(coconut.reference_forward, batch), **slow)
t_reference = median(ts_reference)
# on CUDA, the same step in the other precision: the paper's configs train in exact float32
# (no TF32), and bfloat16 autocast is one flag away (on CPU the in-place gradients of speedups.py
# are float32-only, and bfloat16 does not pay for the small models: docs/performance.md)
other_dtype, t_other = None, None
if device_type == "cuda":
    other_dtype = "float32" if ptdtype != torch.float32 else "bfloat16"

    @contextmanager
    def other_precision():
        if other_dtype == "bfloat16":
            with torch.autocast(device_type, dtype=torch.bfloat16):
                yield
            return
        tf32 = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False  # exact float32 matmuls
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32 = tf32
    [(ts_other, _)] = timed(lambda: train_step(coconut.latent_forward, batch, other_precision()))
    t_other = median(ts_other)
del optimizer

# -----------------------------------------------------------------------------
# 2. generation: the same questions, thoughts then exactly max_new_tokens greedy tokens


@torch.no_grad()
def generate_batched():
    with autocast:  # eos_id=-1 never comes out of argmax: every row makes max_new_tokens tokens
        return coconut.generate(model, gen_batch, max_new_tokens, eos_id=-1)


@torch.no_grad()
def generate_recompute(prompt):
    """One question the way the official generate() does it: the thoughts once, then a forward
    over the whole prefix, no cache, for every new token but the last. Logits only at the last
    position (the official computes all)."""
    b = data.collate([prompt], vocab, device)
    with autocast:
        h = coconut.reference_forward(model, b)  # (1, T, C), the thoughts filled in
        # the input embeddings with the thoughts in place: column t's is column t-1's hidden state
        x = torch.where(b["latent"][..., None], h.roll(1, dims=1), model.transformer.wte(b["idx"]))
        pos, out = b["pos"], []
        for _ in range(max_new_tokens):
            tok = model.logits(h[:, -1:]).argmax(-1)  # (1, 1)
            out.append(tok)
            if len(out) == max_new_tokens:
                break
            x = torch.cat([x, model.transformer.wte(tok)], dim=1)  # (1, T+1, C)
            pos = torch.cat([pos, pos[:, -1:] + 1], dim=1)
            h = model(embeds=x, pos=pos)  # (1, T+1, C): everything again, for one token
    return torch.cat(out, dim=1)  # (1, max_new_tokens)


model.eval()
[(ts_gen, tokens)] = timed(generate_batched)
[(ts_recompute, tokens_recompute)] = timed(lambda: torch.cat([generate_recompute(p) for p in prompts]), **slow)
t_gen, t_recompute = median(ts_gen), median(ts_recompute)
same_tokens = torch.equal(tokens, tokens_recompute)  # random weights: bf16 rounding may flip ties

# -----------------------------------------------------------------------------
# 3. one continuous thought at batch 1: one cached forward of one position, after a question

if ptdtype != torch.float32:
    model.to(ptdtype)  # weights in the compute dtype, as a decoder keeps them (no cast per call)
prompt = data.collate(prompts[:1], vocab, device)
start = prompt["start"]  # the question and <bot> come before the first thought
cache = KVCache(model.config, 1, start + 1, device)
with torch.no_grad():
    h0 = model(idx=prompt["idx"][:, :start], cache=cache)[:, -1:]  # (1, 1, C) the first thought
    h0 = h0.clone(memory_format=torch.contiguous_format)  # the strides of the step's outputs
pos = torch.full((1, 1), start, device=device)
ones = torch.ones(1, 1, dtype=torch.bool, device=device)


def thought(e, cache):
    return model(embeds=e, pos=pos, mask=ones, cache=cache)  # (1, 1, C)


def latent_loop(step):
    @torch.no_grad()
    def run():
        e = h0
        for _ in range(latent_iters):
            cache.rewind(start)  # every thought writes the same slot, so the shapes never change
            e = step(e, cache).clone()  # clone: a CUDA graph overwrites its output on the next call
    return run


t_thought = median(timed(latent_loop(thought))[0][0]) / latent_iters
t_thought_compiled = None
if compile and device_type == "cuda":
    try:
        for t in cache.k + cache.v + [cache.valid]:
            torch._dynamo.mark_static_address(t)  # written in place: the graph keeps their address
        step = torch.compile(thought, mode="reduce-overhead", fullgraph=True)
        t_thought_compiled = median(timed(latent_loop(step), burn_in=2)[0][0]) / latent_iters
    except Exception as e:  # report the eager figure alone rather than fail the whole bench
        print(f"torch.compile of the thought step failed: {type(e).__name__}: {str(e)[:500]}")
# a thought reads every block's weights and the cached keys and values, not the embedding table
weight_bytes = sum(p.numel() * p.element_size() for m in (model.transformer.h, model.transformer.ln_f)
                   for p in m.parameters())
kv_bytes = sum(t[:, :, :start + 1].numel() * t.element_size() for t in cache.k + cache.v)
t_floor = None if bandwidth is None else (weight_bytes + kv_bytes) / bandwidth

# -----------------------------------------------------------------------------
# 4. the quick start (config/prosqa_cpu.py) against the same with whole-word tokens: the small
# model's training step at every stage of the curriculum, the two timed in turns, and each one's
# training time projected from them (its steps per epoch, its epochs; validation not counted:
# docs/performance.md has both run whole, side by side, and what the words cost in accuracy)

QUICKSTART_OTHER = dict(tokenizer="words")


def quickstart_steps_timed(cfgs, n_steps):
    """{name: {stage: (seconds a step, real tokens a step)}} for each config in cfgs, the
    configs' steps timed in turns, on one sample of the quick start's data (float32, eager)."""
    knobs = tasks.knobs_of("prosqa", cfgs["now"])
    records = tasks.make_splits("prosqa", 32 * n_steps * 4, 0, 0, seed=seed, **knobs)[0]
    runs = {}
    for name, c in cfgs.items():
        vocab = data.Vocab.from_records(records, c["tokenizer"])
        torch.manual_seed(seed)
        m = GPT(GPTConfig(block_size=c["block_size"], vocab_size=vocab.size, n_tokens=vocab.n_tokens,
                          n_layer=c["n_layer"], n_head=c["n_head"], n_embd=c["n_embd"])).to(device)
        speedups.enable(m, device_type, eager_float32=True)
        opt = torch.optim.AdamW(m.parameters(), lr=c["learning_rate"])
        order = data.batch_order([len(vocab.encode(r["question"])) for r in records], c["batch_size"],
                                 random.Random(seed), c["sort_chunk"])
        runs[name] = (m, opt, vocab, data.tokenize(records, vocab), order)
    layout_args = {k: cfgs["now"][k] for k in ("c_thought", "max_latent_stage", "pad_latent_to_max")}
    times = {name: {} for name in cfgs}
    for stage in range(cfgs["now"]["max_latent_stage"] + 2):  # the last one: all steps replaced
        calls = {}
        for name, (m, opt, vocab, examples, order) in runs.items():
            batches = [data.collate([data.layout(examples[i], vocab, "coconut", stage, **layout_args)
                                     for i in rows], vocab, device) for rows in order[:n_steps]]

            def call(m=m, opt=opt, batches=batches):
                for b in batches:
                    coconut.forward_backward(m, [b])
                    opt.step()
                    opt.zero_grad(set_to_none=True)
            calls[name] = (call, sum(int(b["mask"].sum()) for b in batches) / n_steps)
        timings = timed(*(fn for fn, _ in calls.values()))
        for (name, (_, tokens)), (ts, _) in zip(calls.items(), timings):
            times[name][stage] = (median(ts) / n_steps, tokens)
    return times


quickstart = None
if quickstart_steps > 0:
    train_defaults = configurator.train_defaults()
    now = configure(train_defaults, [os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "config", "prosqa_cpu.py")])
    cfgs = dict(now=now, words={**now, **QUICKSTART_OTHER})
    times = quickstart_steps_timed(cfgs, quickstart_steps)
    quickstart = {}
    for name, c in cfgs.items():
        stage_of = lambda epoch: min(epoch // c["epochs_per_stage"], c["max_latent_stage"] + 1)
        steps = c["n_train"] // c["batch_size"]
        quickstart[name] = dict(
            tokens_per_s=sum(tok for _, tok in times[name].values()) / sum(t for t, _ in times[name].values()),
            train_s=sum(steps * times[name][stage_of(e)][0] for e in range(c["num_epochs"])))

# -----------------------------------------------------------------------------
# report: a table, then every figure as one JSON object on the last line

fmt = lambda x, spec: "-" if x is None else format(x, spec)
print(f"\ntraining step: batch {B} x {T} columns ({n_tokens} real tokens, {n_labels} labelled), "
      f"{n_latent} thoughts, forward + backward + AdamW")
print(f"  {'':42} {'ms/step':>10} {'tokens/s':>10} {'MFU':>7}  {'vs coconut':>10}")
for name, t in (("coconut: cached latent loop", t_coconut), ("CoT-equivalent: one forward, no thoughts", t_cot),
                ("reference: recompute per thought", t_reference)):
    print(f"  {name:42} {t * 1e3:10.1f} {n_tokens / t:10.0f} {fmt(mfu(t), '7.1%')}  {t / t_coconut:9.2f}x")
if t_other is not None:
    print(f"  {'coconut in ' + other_dtype:42} {t_other * 1e3:10.1f} {n_tokens / t_other:10.0f} "
          f"{'':7}  {t_other / t_coconut:9.2f}x")
print(f"  coconut / CoT {median(ratios_vs_cot):.2f}x, the median of {len(ratios_vs_cot)} rounds "
      f"({', '.join(f'{x:.3f}' for x in ratios_vs_cot)}); speed-up over reference {t_reference / t_coconut:.1f}x")
print(f"\ngeneration: {n_gen} questions ({gen_batch['idx'].size(1)}-column prompts), {n_latent} "
      f"thoughts + {max_new_tokens} greedy tokens each")
print(f"  {'':42} {'seconds':>10} {'questions/s':>12}")
for name, t in (("batched, KV cache (coconut.generate)", t_gen), ("one at a time, full recompute", t_recompute)):
    print(f"  {name:42} {t:10.3f} {n_gen / t:12.2f}")
print(f"  speed-up {t_recompute / t_gen:.1f}x, same tokens: {same_tokens}")
print(f"\nlatent step: one thought at batch 1 after {start} cached positions")
print(f"  {'eager':42} {t_thought * 1e6:10.1f} us")
print(f"  {'compiled (reduce-overhead)':42} {fmt(t_thought_compiled and t_thought_compiled * 1e6, '10.1f'):>10} us")
print(f"  {'bandwidth floor':42} {fmt(t_floor and t_floor * 1e6, '10.1f'):>10} us "
      f"({(weight_bytes + kv_bytes) / 1e6:.0f} MB at {fmt(bandwidth and bandwidth / 1e12, '.2f')} TB/s)")

if quickstart:
    n, w = quickstart["now"], quickstart["words"]
    print(f"\nquick start (config/prosqa_cpu.py, float32): the small model's training step at "
          f"each stage, {quickstart_steps} steps a call; training time projected (no validation)")
    print(f"  {'':42} {'tokens/s':>10} {'train s':>10}")
    for name, q in (("config/prosqa_cpu.py (GPT-2 BPE ids)", n), ("the same, tokenizer='words'", w)):
        print(f"  {name:42} {q['tokens_per_s']:10.0f} {q['train_s']:10.0f}")
    print(f"  whole words: training time {n['train_s'] / w['train_s']:.2f}x shorter")

r = lambda x, n=4: None if x is None else float(f"{x:.{n}g}")  # 4 significant digits
print(json.dumps(dict(
    device=device_name, dtype=dtype, load_avg=load(), n_params=model.num_params(), batch_size=B, seq_len=T,
    n_latent=n_latent, n_gen=n_gen, max_new_tokens=max_new_tokens,
    train_ms_coconut=r(t_coconut * 1e3), train_ms_cot=r(t_cot * 1e3), train_ms_reference=r(t_reference * 1e3),
    train_tokens_per_s=r(n_tokens / t_coconut), train_tokens_per_s_cot=r(n_tokens / t_cot),
    train_step_ratio_vs_cot=r(median(ratios_vs_cot)), train_step_ratio_rounds=[r(x) for x in ratios_vs_cot],
    train_speedup_vs_reference=r(t_reference / t_coconut),
    train_other_dtype=other_dtype, train_ms_coconut_other_dtype=r(t_other and t_other * 1e3),
    mfu=r(mfu(t_coconut)), mfu_cot=r(mfu(t_cot)),
    gen_questions_per_s=r(n_gen / t_gen), gen_recompute_questions_per_s=r(n_gen / t_recompute),
    generate_speedup_vs_recompute=r(t_recompute / t_gen), gen_same_tokens=same_tokens,
    latent_step_us=r(t_thought * 1e6), latent_step_us_compiled=r(t_thought_compiled and t_thought_compiled * 1e6),
    latent_step_floor_us=r(t_floor and t_floor * 1e6),
    quickstart_tokens_per_s=quickstart and r(quickstart["now"]["tokens_per_s"]),
    quickstart_train_s=quickstart and r(quickstart["now"]["train_s"]),
    quickstart_words_tokens_per_s=quickstart and r(quickstart["words"]["tokens_per_s"]),
    quickstart_words_train_s=quickstart and r(quickstart["words"]["train_s"]),
    quickstart_words_speedup=quickstart and r(quickstart["now"]["train_s"] / quickstart["words"]["train_s"]),
)))
