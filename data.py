"""
Data for Coconut: the stage-k curriculum layout and the collator, GPT-2's tokenizer, and the
vocabulary a model reads (GPT-2's, or only the tokens or words of its training split). The
records themselves, {question, steps, answer}, come from the tasks in tasks/ (one file each).

At stage k of the curriculum, the first k language steps of an example's chain of thought are
replaced by k*c continuous thoughts (c = c_thought; here c = 1 and K = max_latent_stage = 3):

```
stage 0:  question  <bot> <eot>             step 1  step 2  step 3  ### answer     (= CoT)
stage 1:  question  <bot> [h] <eot>                 step 2  step 3  ### answer
stage 2:  question  <bot> [h] [h] <eot>                     step 3  ### answer
stage 3:  question  <bot> [h] [h] [h] <eot>                         ### answer
```

Each [h] is a <latent> placeholder whose input embedding coconut.py replaces by the previous
position's last hidden state. Labels cover only what follows <eot>: the thoughts are never
supervised, the language after them is. Past stage K every step is dropped, and K*c thoughts
stay in their place.

    python -c "import data; print(data.stage_plan(3, 'coconut', 2, 1, 3, True))"
"""
import os
import re
from typing import NamedTuple

import tiktoken
import torch
from tiktoken.load import data_gym_to_mergeable_bpe_ranks

# -----------------------------------------------------------------------------
# The curriculum: which steps an example keeps at each stage, and how a batch is laid out


class Method(NamedTuple):
    """A method is what it does to the chain of thought (the paper's Table 1 rows)."""
    stage: object  # None: the curriculum's stage of the epoch; 0 (CoT) or "last" throughout
    slot: str  # what fills a thought slot: "latent" (a continuous thought), "pause", or "" (none)
    marked: bool  # whether <bot> and <eot> surround the slots


METHODS = {
    "coconut": Method(None, "latent", True),
    "pause_as_thought": Method(None, "pause", True),  # the curriculum with a fixed <pause> embedding
    # in the slots: no thought depends on another, so its batch is one ordinary forward
    "no_thoughts": Method(None, "", False),  # the curriculum drops steps, nothing takes their place
    "cot": Method(0, "", False),
    "no_cot": Method("last", "", False),  # question, then answer
    "pause_token": Method("last", "pause", False),  # No-CoT with <pause> tokens, as many as thoughts
    "no_curriculum": Method("last", "latent", True),  # straight to the last stage
}


def has_stages(method):
    """Whether a run of this method counts stages (when a 'stage' optimizer reset happens, what
    the log shows): all but the plain language models, CoT and No-CoT."""
    m = METHODS[method]
    return m.stage is None or m.slot != ""


class Plan(NamedTuple):
    """What an example looks like at one stage of a method's curriculum."""
    dropped: int  # language steps removed from the front of the chain
    n_slots: int  # thought slots in their place (<latent>, or <pause> for the pause methods)
    marked: bool  # whether <bot> and <eot> surround the slots


def stage_plan(n_steps, method, stage, c_thought, max_latent_stage, pad_latent_to_max):
    """The Plan of an example with n_steps language steps at a curriculum stage.

    At stage k the first min(k, n_steps) steps are dropped, for k > K all of them. Slots:
    min(k, K)*c with pad_latent_to_max (every config of the paper's recipe pads), else
    min(k, K, n_steps)*c, in training and in evaluation alike. (The official code, unpadded,
    gives k*c in training at k <= K even to an example with fewer steps, but min(k, K,
    n_steps)*c in evaluation; we keep the two the same.)"""
    m, K = METHODS[method], max_latent_stage
    stage = stage if m.stage is None else K + 1 if m.stage == "last" else m.stage
    dropped = n_steps if stage > K else min(stage, n_steps)
    n = min(stage, K) if pad_latent_to_max else min(stage, K, n_steps)
    return Plan(dropped, n * c_thought if m.slot else 0, m.marked)


def sample_stage(rng, n_steps, stage, uniform_prob):
    """The stage one example trains at in an epoch: with probability uniform_prob a stage drawn
    uniformly from 0..n_steps (so that earlier layouts are not forgotten), else the
    curriculum's stage."""
    return rng.randrange(n_steps + 1) if rng.random() < uniform_prob else stage


class Row(NamedTuple):
    """One laid-out example: token ids, labels (-100: no loss) and the first thought's index."""
    ids: list
    labels: list
    start: int


def layout(ex, vocab, method, stage, c_thought=1, max_latent_stage=6, pad_latent_to_max=False,
           n_latent=None, prompt_only=False):
    """The Row of a tokenized example at a curriculum stage.

    n_latent overrides the number of thought slots (inference with more or fewer than
    trained; ignored by a method without slots). prompt_only stops after the slots: what
    generation starts from.
    """
    plan = stage_plan(len(ex["steps"]), method, stage, c_thought, max_latent_stage, pad_latent_to_max)
    slot = METHODS[method].slot
    n = plan.n_slots if n_latent is None or not slot else n_latent
    thought = vocab.pause if slot == "pause" else vocab.latent
    prefix = ex["question"] + [vocab.bot] * plan.marked + [thought] * n + [vocab.eot] * plan.marked
    rest = [] if prompt_only else [t for s in ex["steps"][plan.dropped:] for t in s] + ex["answer"]
    return Row(prefix + rest, [-100] * len(prefix) + rest, len(ex["question"]) + plan.marked)


def prompt(ex, vocab, cfg, n_latent=None):
    """What a trained model answers from: its last stage's layout up to the thoughts' end,
    cfg being the train.py settings it was trained with (n_latent None: as many as trained)."""
    K = cfg["max_latent_stage"]
    return layout(ex, vocab, cfg["method"], K + 1, cfg["c_thought"], K, cfg["pad_latent_to_max"],
                  n_latent=n_latent, prompt_only=True)


def trained_n_latent(cfg):
    """Thoughts (or <pause> slots) a model saw at its last stage: K*c, or 0 for CoT."""
    K = cfg["max_latent_stage"]
    return stage_plan(0, cfg["method"], K + 1, cfg["c_thought"], K, True).n_slots


def collate(rows, vocab, device="cpu"):
    """Batch Rows so that every row's thoughts sit in the same columns.

    Rows are left-padded so their first thoughts align at column `start`, then right-padded to
    the longest row. Each row's positions start at 0 at its first real token. The latent loop
    then feeds one column per pass for the whole batch.
    """
    start = max(r.start for r in rows)
    T = max(start - at + len(ids) for ids, _, at in rows)
    B = len(rows)
    idx = torch.full((B, T), vocab.eos, dtype=torch.long)
    labels = torch.full((B, T), -100, dtype=torch.long)
    pos = torch.zeros((B, T), dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.bool)
    for b, (ids, lab, at) in enumerate(rows):
        left = start - at
        idx[b, left:left + len(ids)] = torch.tensor(ids)
        labels[b, left:left + len(ids)] = torch.tensor(lab)
        pos[b, left:left + len(ids)] = torch.arange(len(ids))
        mask[b, left:left + len(ids)] = True
    latent = idx == vocab.latent  # (B, T) columns whose input is a continuous thought
    n_latent = int(latent.sum(1).max())  # thoughts are contiguous from `start` in every row
    return dict(idx=idx.to(device), labels=labels.to(device), pos=pos.to(device),
                mask=mask.to(device), latent=latent.to(device), start=start, n_latent=n_latent)


def batch_order(lengths, per_step, rng, sort_chunk=0):
    """An epoch's batches: lists of per_step example indices, shuffled by rng; the ragged end
    is dropped. A batch is as long as its longest question plus its longest remainder (see
    collate), so with sort_chunk > 0 each run of that many batches is regrouped by question
    length (`lengths`), which cuts the padding, and the batches are shuffled again so that
    lengths do not drift through the epoch."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    n_steps = len(order) // per_step
    steps = [order[s * per_step:(s + 1) * per_step] for s in range(n_steps)]
    if sort_chunk > 0:
        for c in range(0, n_steps, sort_chunk):
            chunk = sorted(sum(steps[c:c + sort_chunk], []), key=lambda i: lengths[i])
            steps[c:c + sort_chunk] = [chunk[k:k + per_step] for k in range(0, len(chunk), per_step)]
        rng.shuffle(steps)
    return steps


# -----------------------------------------------------------------------------
# Tokenizer: GPT-2 BPE from the original files shipped in gpt2/, so it never touches the network.
# Coconut's markers and a pause token take the ids right after <|endoftext|>.

EOS, BOT, EOT, LATENT, PAUSE = 50256, 50257, 50258, 50259, 50260
SPECIAL_TOKENS = {"<|endoftext|>": EOS, "<|start-latent|>": BOT, "<|end-latent|>": EOT,
                  "<|latent|>": LATENT, "<|pause|>": PAUSE}

_enc = None

def tokenizer():
    global _enc
    if _enc is None:
        here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpt2")
        ranks = data_gym_to_mergeable_bpe_ranks(
            os.path.join(here, "vocab.bpe"), os.path.join(here, "encoder.json"),
            vocab_bpe_hash="1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
            encoder_json_hash="196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783")
        gpt2_pat = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
        _enc = tiktoken.Encoding("gpt2-coconut", pat_str=gpt2_pat, mergeable_ranks=ranks,
                                 special_tokens=SPECIAL_TOKENS)
    return _enc

def encode(text):
    """Plain text to GPT-2 ids; text that looks like a special token stays plain text."""
    return tokenizer().encode_ordinary(text)

def decode(ids):
    return tokenizer().decode(list(ids))

# -----------------------------------------------------------------------------
# The vocabulary a model reads: GPT-2's BPE (pretrained weights need it), or, for a model trained
# from scratch, only the tokens its training split uses: GPT-2's BPE ids ('task'), or whole words
# ('words': " wumpus" is one id where GPT-2's BPE has " w", "ump", "us": ~63% of the tokens).

WORD = re.compile(r" ?[^\W\d_]+| ?\d+| ?[^\w\s]+| ?_+|\s+(?!\S)|\s+")  # every character, once
TOKENIZERS = ("gpt2", "task", "words")


class Vocab:
    """Model ids <-> text. `tokens` is what a checkpoint stores: None for GPT-2's whole table
    (model ids are GPT-2 ids), the GPT-2 ids a split uses ('task'), or its words ('words').
    The markers and <pause> are always in, and the table is padded to a multiple of 64."""

    def __init__(self, tokens=None):
        self.kind = "gpt2" if tokens is None else "words" if isinstance(next(iter(tokens)), str) else "task"
        specials = SPECIAL_TOKENS if self.kind == "words" else SPECIAL_TOKENS.values()
        self.tokens = None if tokens is None else sorted(set(tokens) | set(specials))
        self.index = None if tokens is None else {t: i for i, t in enumerate(self.tokens)}
        self.n_tokens = PAUSE + 1 if tokens is None else len(self.tokens)  # ids that are tokens
        self.size = -(-self.n_tokens // 64) * 64  # embedding rows, padded to a multiple of 64
        self.eos, self.bot, self.eot, self.latent, self.pause = (
            self.id(name) for name in SPECIAL_TOKENS)

    @classmethod
    def from_records(cls, records, kind="task"):
        """The vocabulary of a training split (for 'gpt2': GPT-2's whole table)."""
        if kind == "gpt2":
            return cls()
        if not records:  # a model from scratch reads only its training split's tokens
            raise ValueError(f"a {kind!r} vocabulary is made from the training split's records, "
                             "and none were given")
        split = WORD.findall if kind == "words" else encode
        return cls({t for r in records for text in texts_of(r) for t in split(text)})

    def id(self, name):
        """The model id of a special token, by name ("<|endoftext|>", ...)."""
        if self.kind == "words":
            return self.index[name]
        return SPECIAL_TOKENS[name] if self.index is None else self.index[SPECIAL_TOKENS[name]]

    def encode(self, text):
        pieces = WORD.findall(text) if self.kind == "words" else encode(text)
        if self.index is None:
            return pieces
        unknown = [i for i, t in enumerate(pieces) if t not in self.index]
        if unknown:
            words = sorted({quote(w) for w in words_at(text, pieces, unknown, self.kind)})
            more = f" and {len(words) - 5} more" if len(words) > 5 else ""
            raise ValueError(f"{', '.join(words[:5])}{more} not in this model's {self.kind} vocabulary "
                             f"({len(self.tokens)} tokens of its training data): use that data's "
                             "words, or train with tokenizer='gpt2'")
        return [self.index[t] for t in pieces]

    def decode(self, ids):
        if self.index is None:
            return decode(ids)
        known = [self.tokens[i] for i in ids if i < len(self.tokens)]
        return "".join(known) if self.kind == "words" else decode(known)


def texts_of(record):
    """The texts of a record as tokenize() encodes them."""
    return [record["question"] + "\n", "### " + record["answer"], *(s + "\n" for s in record["steps"])]


def words_at(text, pieces, at, kind):
    """The whole words of `text` that hold pieces[i] for i in `at` (for error messages)."""
    if kind == "words":
        return [pieces[i].strip() or repr(pieces[i]) for i in at]
    _, offsets = tokenizer().decode_with_offsets(pieces)
    words = []
    for i in at:
        lo = offsets[i]
        while lo < len(text) - 1 and text[lo].isspace():
            lo += 1  # a token such as " zebra" starts at its space
        hi = lo
        while lo > 0 and not text[lo - 1].isspace():
            lo -= 1
        while hi < len(text) and not text[hi].isspace():
            hi += 1
        words.append(text[lo:hi].strip(".,;:!?") or repr(decode([pieces[i]])))
    return words


def quote(text, n=40):
    """repr(text), cut to about n characters: an error message stays one readable line."""
    return repr(text) if len(text) <= n else repr(text[:n]) + f"... ({len(text)} characters)"


def tokenize(records, vocab, questions_only=False):
    """Tokenize a dataset once; every stage's layout is then list work on these ids.
    questions_only keeps just the number of steps: enough for prompts, and an answer with a
    word outside a task vocabulary is then simply a wrong answer, not an error."""
    if questions_only:
        return [dict(question=vocab.encode(r["question"] + "\n"), steps=[[]] * len(r["steps"]),
                     answer=[]) for r in records]
    return [dict(question=vocab.encode(r["question"] + "\n"),
                 steps=[vocab.encode(s + "\n") for s in r["steps"]],
                 answer=vocab.encode("### " + r["answer"]) + [vocab.eos]) for r in records]
