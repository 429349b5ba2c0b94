"""The curriculum layout token by token, the collator, the tokenizer, the task vocabulary and
the loader of the official format."""
import json
import random

import pytest
import torch

import data
import scoring
import tasks
from files import load_records

REC = dict(question="Q.", steps=["A.", "B.", "C."], answer="X.")
VOCAB = data.Vocab()  # GPT-2 ids, so the layout can be read against encode()
EX = data.tokenize([REC], VOCAB)[0]
E = data.encode
Q, A, B, C = E("Q.\n"), E("A.\n"), E("B.\n"), E("C.\n")
ANS = E("### X.") + [data.EOS]
BOT, EOT, LAT, PAUSE = data.BOT, data.EOT, data.LATENT, data.PAUSE


def test_gpt2_ids():
    assert data.encode("Hello world") == [15496, 995]
    assert data.decode([15496, 995]) == "Hello world"
    assert data.EOS == 50256 and (BOT, EOT, LAT, PAUSE) == (50257, 50258, 50259, 50260)


def test_plain_text_never_yields_special_ids():
    text = "<|endoftext|> <|latent|> <|start-latent|>"
    ids = data.encode(text)
    assert max(ids) < 50256 and data.decode(ids) == text
    assert data.decode([BOT, LAT, EOT]) == "<|start-latent|><|latent|><|end-latent|>"


@pytest.mark.parametrize("text", ["Every wumpus is a yumpus.\n", "  spaces  and\ttabs ", "ünïcode ✓", ""])
def test_tokenizer_round_trip(text):
    assert data.decode(data.encode(text)) == text


def lay(method, stage, pad=True, **kw):
    ids, labels, at = data.layout(EX, VOCAB, method, stage, c_thought=kw.pop("c", 1),
                                  max_latent_stage=2, pad_latent_to_max=pad, **kw)
    return ids, labels, at


def masked(n):
    return [-100] * n


@pytest.mark.parametrize("method,stage,ids,n_prefix", [
    ("coconut", 0, Q + [BOT, EOT] + A + B + C + ANS, len(Q) + 2),
    ("coconut", 1, Q + [BOT, LAT, EOT] + B + C + ANS, len(Q) + 3),
    ("coconut", 2, Q + [BOT, LAT, LAT, EOT] + C + ANS, len(Q) + 4),
    ("coconut", 3, Q + [BOT, LAT, LAT, EOT] + ANS, len(Q) + 4),   # past K: all steps go, K thoughts
    ("cot", 5, Q + A + B + C + ANS, len(Q)),
    ("no_cot", 5, Q + ANS, len(Q)),
    ("pause_token", 0, Q + [PAUSE, PAUSE] + ANS, len(Q) + 2),
    ("no_thoughts", 1, Q + B + C + ANS, len(Q)),
    ("no_thoughts", 3, Q + ANS, len(Q)),
    ("pause_as_thought", 1, Q + [BOT, PAUSE, EOT] + B + C + ANS, len(Q) + 3),
    ("no_curriculum", 0, Q + [BOT, LAT, LAT, EOT] + ANS, len(Q) + 4),
])
def test_layout_token_by_token(method, stage, ids, n_prefix):
    got, labels, at = lay(method, stage)
    assert got == ids
    assert labels == masked(n_prefix) + ids[n_prefix:]
    assert at == len(Q) + (1 if got[len(Q)] == BOT else 0)


def test_layout_knobs():
    assert lay("coconut", 2, c=2)[0] == Q + [BOT] + [LAT] * 4 + [EOT] + C + ANS
    short = data.tokenize([dict(question="Q.", steps=["A."], answer="X.")], VOCAB)[0]
    ids, _, _ = data.layout(short, VOCAB, "coconut", 2, max_latent_stage=2, pad_latent_to_max=True)
    assert ids.count(LAT) == 2  # padded to min(stage, K)
    ids, _, _ = data.layout(short, VOCAB, "coconut", 2, max_latent_stage=2, pad_latent_to_max=False)
    assert ids.count(LAT) == 1  # as many as the example has steps
    ids, labels, _ = lay("coconut", 3, n_latent=5, prompt_only=True)
    assert ids == Q + [BOT] + [LAT] * 5 + [EOT] and set(labels) == {-100}


def test_collate_aligns_thoughts_and_masks_padding():
    recs = [dict(question="Q.", steps=["A.", "B."], answer="X."),
            dict(question="A much longer question here.", steps=["A."], answer="Y.")]
    exs = data.tokenize(recs, VOCAB)
    rows = [data.layout(exs[0], VOCAB, "coconut", 2, max_latent_stage=2),
            data.layout(exs[1], VOCAB, "coconut", 1, max_latent_stage=2)]
    b = data.collate(rows, VOCAB)
    s = b["start"]
    assert b["idx"][0, s - 1] == BOT and b["idx"][1, s - 1] == BOT  # <bot> in the same column
    assert b["latent"][:, s].all() and b["latent"][0, s + 1] and not b["latent"][1, s + 1]
    assert b["n_latent"] == 2
    for r, (ids, labels, at) in enumerate(rows):
        left = s - at
        assert not b["mask"][r, :left].any() and b["mask"][r, left:left + len(ids)].all()
        assert not b["mask"][r, left + len(ids):].any()
        assert b["labels"][r][~b["mask"][r]].eq(-100).all()  # padding never has a label
        assert b["pos"][r, left:left + len(ids)].tolist() == list(range(len(ids)))
        assert b["idx"][r, left:left + len(ids)].tolist() == ids


def test_task_vocab_round_trip_and_unknown_words():
    recs = [dict(question="Tom is a wumpus. Is Tom a wumpus or yumpus?", steps=["Tom is a wumpus."],
                 answer="Tom is a wumpus.")]
    v = data.Vocab.from_records(recs)
    assert v.size % 64 == 0 and len(v.tokens) < 40
    text = "Tom is a yumpus.\n### Tom is a wumpus."
    ids = v.encode(text)
    assert max(ids) < len(v.tokens) and v.decode(ids) == text
    assert v.decode([v.bot, v.latent, v.eot, v.eos]) == "<|start-latent|><|latent|><|end-latent|><|endoftext|>"
    back = data.Vocab(v.tokens)  # as stored in a checkpoint
    assert back.encode(text) == ids
    with pytest.raises(ValueError, match="'zebra'"):
        v.encode("Tom is a zebra.")


def test_tokenize_once_shapes():
    ex = data.tokenize([REC], VOCAB)[0]
    assert ex["question"] == Q and ex["steps"] == [A, B, C] and ex["answer"] == ANS


def test_batch_order_is_a_shuffled_partition_with_less_padding():
    recs = tasks.generate("prosqa", 640, seed=3, n_nodes=8, min_hops=2, max_hops=3)
    vocab = data.Vocab.from_records(recs)
    exs = data.tokenize(recs, vocab)
    lengths = [len(ex["question"]) for ex in exs]
    padded = {}
    for sort_chunk in (0, 5):
        steps = data.batch_order(lengths, 32, random.Random(7), sort_chunk)
        assert steps == data.batch_order(lengths, 32, random.Random(7), sort_chunk)  # deterministic
        assert len(steps) == 20 and all(len(s) == 32 for s in steps)
        assert sorted(i for s in steps for i in s) == list(range(640))  # each example once
        rows = [[data.layout(exs[i], vocab, "coconut", 1, max_latent_stage=3) for i in s] for s in steps]
        padded[sort_chunk] = sum(data.collate(r, vocab)["idx"].numel() for r in rows)
    assert padded[5] < 0.9 * padded[0]  # regrouping by question length cuts padding
    # ragged ends: 650 examples make 20 batches; sort_chunk need not divide the batch count
    steps = data.batch_order(lengths + lengths[:10], 32, random.Random(0), sort_chunk=3)
    assert len(steps) == 20 and all(len(s) == 32 for s in steps)
    assert len({i for s in steps for i in s}) == 640


GOOD = {"question": "q", "steps": ["a", "b"], "answer": "x", "extra": 1}


@pytest.mark.parametrize("content, needles", [
    ("", ["empty"]),
    ("   \n", ["empty"]),
    ('[{"question": "q",\n "steps": [}]', ["invalid JSON", "line 2", "col"]),
    (json.dumps(GOOD), ["top level", "dict"]),
    ("[]", ["empty"]),
    (json.dumps([GOOD, "text"]), ["record 1", "str"]),
    (json.dumps([GOOD, {"question": "q", "steps": []}]), ["record 1", "'answer'"]),
    (json.dumps([GOOD, {**GOOD, "question": 3}]), ["record 1", "'question'", "int"]),
    (json.dumps([GOOD, {**GOOD, "answer": None}]), ["record 1", "'answer'", "NoneType"]),
    (json.dumps([GOOD, {**GOOD, "steps": "a b"}]), ["record 1", "'steps'", "str"]),
    (json.dumps([GOOD, {**GOOD, "steps": ["a", 3]}]), ["record 1", "'steps'", "steps[1]"]),
    (b"[\xff\xfe]", ["not UTF-8"]),
    ("[" * 100000 + "]" * 100000, ["nested too deeply"]),
])

def test_load_records_errors(tmp_path, content, needles):
    path = tmp_path / "bad.json"
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    with pytest.raises(ValueError) as e:
        load_records(str(path))
    for needle in [str(path)] + needles:
        assert needle in str(e.value)


def test_load_records_ok_and_missing(tmp_path):
    path = tmp_path / "ok.json"
    path.write_text(json.dumps([GOOD, GOOD]))
    assert load_records(str(path)) == [GOOD, GOOD]  # extra fields kept
    with pytest.raises(FileNotFoundError, match="nope.json.*python -m tasks"):
        load_records(str(tmp_path / "nope.json"))
    with pytest.raises(ValueError, match="is a folder"):
        load_records(str(tmp_path))


def test_sample_stage_mixes_in_uniform_stages():
    rng = random.Random(0)
    assert {data.sample_stage(rng, 3, 2, 0.0) for _ in range(1000)} == {2}
    draws = [data.sample_stage(rng, 3, 2, 0.4) for _ in range(20000)]
    # stage 2 from the curriculum (0.6) or drawn (0.4 / 4); each other stage 0.4 / 4 = 0.1
    shares = [draws.count(k) / len(draws) for k in range(4)]
    assert shares == pytest.approx([0.1, 0.1, 0.7, 0.1], abs=0.012)
    assert set(data.sample_stage(rng, 3, 5, 1.0) for _ in range(200)) == {0, 1, 2, 3}


def test_answer_of_and_decode_output():
    assert scoring.answer_of("Tom is a wumpus.\nEvery wumpus is a lempus.\n### Tom is a lempus.") == "Tom is a lempus."
    assert scoring.answer_of("no marker") == "no marker"
    # GSM8k writes thousands with commas: its tasks (gsm8k, arith) read them as numbers
    for task in ("gsm8k", "arith"):
        assert scoring.answer_of("<<3*4=12>>\n### 1,200 ", task) == "1200"
    assert scoring.answer_of("### Tom is a, b.", "prosqa") == "Tom is a, b."  # words keep their commas
    assert scoring.answer_of("### 1,2", "my_own_task") == "1,2"  # a task without a module of its own
    ids = E("A.\n### X.")
    text, n = scoring.decode_output(VOCAB, ids + [data.EOS] + E(" junk") + [data.EOS])
    assert (text, n) == ("A.\n### X.", len(ids) + 1)  # up to <eos>, which counts as generated
    assert scoring.decode_output(VOCAB, ids) == ("A.\n### X.", len(ids))  # no <eos>: all of it


@pytest.mark.parametrize("task", ["prosqa", "prontoqa", "arith"])
def test_word_vocab_round_trips_every_record(task):
    """tokenizer='words': every text of every record decodes back to itself, with fewer tokens
    than GPT-2's BPE gives (a concept such as " wumpus" is one id, not three)."""
    records = tasks.make_splits(task, 300, 20, 20, seed=5)[0]
    words, bpe = data.Vocab.from_records(records, "words"), data.Vocab.from_records(records, "task")
    texts = [t for r in records for t in data.texts_of(r)]
    for text in texts:
        ids = words.encode(text)
        assert words.decode(ids) == text and max(ids) < words.n_tokens
    assert sum(len(words.encode(t)) for t in texts) <= sum(len(bpe.encode(t)) for t in texts)
    if task == "prosqa":
        assert words.encode(" wumpus") == [words.index[" wumpus"]] and len(bpe.encode(" wumpus")) > 1
    back = data.Vocab(words.tokens)  # as a checkpoint stores it
    assert back.kind == "words" and back.encode(texts[0]) == words.encode(texts[0])
    assert (back.eos, back.latent) == (words.eos, words.latent) and back.size % 64 == 0


@pytest.mark.parametrize("text", ["Every wumpus is a yumpus.\n", "  spaces  and\ttabs ", "ünïcode ✓", "",
                                  "<<10-1=9>> <<9*2=18>>\n### 18", "<|endoftext|> a_b", "\n\n \n"])
def test_words_cover_every_character(text):
    assert "".join(data.WORD.findall(text)) == text


def test_word_vocab_specials_and_unknown_words():
    recs = [dict(question="Tom is a wumpus. Is Tom a wumpus or yumpus?", steps=["Tom is a wumpus."],
                 answer="Tom is a wumpus.")]
    v = data.Vocab.from_records(recs, "words")
    assert v.decode([v.bot, v.latent, v.eot, v.eos]) == "<|start-latent|><|latent|><|end-latent|><|endoftext|>"
    with pytest.raises(ValueError, match="'zebra' not in this model's words vocabulary .*tokenizer='gpt2'"):
        v.encode("Tom is a zebra.")
    with pytest.raises(ValueError, match=r"'zzzz[^']*'\.\.\. \(5000 characters\)"):
        v.encode("Tom is a " + "z" * 5000)
