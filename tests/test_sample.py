"""sample.py: the script on a tiny checkpoint, the frontier values, the mixing categories."""
import json
import math
import os
import re
import runpy
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import coconut
import data
import sample
from model import GPT, GPTConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the train.py settings sample.py reads, as a ProsQA Coconut run with K=3 would save them
CFG = dict(task="prosqa", method="coconut", c_thought=1, max_latent_stage=3,
           pad_latent_to_max=True, vocab="task")
NEW = 24  # max_new_tokens: a random model never stops, so keep its outputs short


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # tiny matmuls: a second thread only adds synchronisation (and, on a busy machine, a lot)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_model(vocab, seed=0):
    torch.manual_seed(seed)
    model = GPT(GPTConfig(block_size=256, vocab_size=vocab.size, n_layer=1, n_head=2, n_embd=32))
    with torch.no_grad():  # larger weights than GPT-2's init: sharper, more varied outputs
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """A random-weight checkpoint in train.py's layout, and a test split whose answers are, for
    some questions, exactly what the model generates (so accuracy is neither 0 nor 1)."""
    root = tmp_path_factory.mktemp("sample")
    records = data.generate_prosqa(30, seed=1, n_nodes=8, min_hops=2, max_hops=3)
    vocab = data.Vocab.from_records(records)  # the words of all 30, as if they were the train split
    test = records[24:]
    model = tiny_model(vocab)
    cfg = dict(CFG, data_dir=str(root / "data"))
    by_k = {k: sample.run(model, vocab, test, cfg, latent=k, max_new_tokens=NEW) for k in (0, 3)}
    for i, r in enumerate(test[:5]):  # 0, 2, 4 match the 3-thought answers; 1, 3 the 0-thought
        r["answer"] = by_k[3 if i % 2 == 0 else 0][i]["answer"]
    os.makedirs(root / "data")
    with open(root / "data" / "prosqa_test.json", "w") as f:
        json.dump(test, f)
    torch.save(dict(model=model.state_dict(), model_args=dict(vars(model.config)), config=cfg,
                    vocab=vocab.gpt2_ids), root / "best.pt")
    return dict(dir=str(root), model=model, vocab=vocab, cfg=cfg, test=test, records=records)


def run_script(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "sample.py", *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("latent", [0, 3])
def test_script_accuracy_matches_answers(tiny_ckpt, latent):
    out = run_script(f"--out_dir={tiny_ckpt['dir']}", "--latent", str(latent), "--num_samples=0",
                     f"--max_new_tokens={NEW}", "--device=cpu")
    thoughts = re.findall(r"thought (\d+):", out)
    assert thoughts == ([] if latent == 0 else ["1", "2", "3"] * sample.SHOW)
    correct, n = map(int, re.search(r"accuracy [\d.]+ \((\d+)/(\d+)\)", out).groups())
    test = tiny_ckpt["test"]
    results = sample.run(tiny_ckpt["model"], tiny_ckpt["vocab"], test, tiny_ckpt["cfg"],
                         latent=latent, max_new_tokens=NEW)
    expected = sum(r["answer"] == sample.answer_of(t["answer"]) for r, t in zip(results, test))
    assert (correct, n) == (expected, len(test))
    assert expected >= 2  # the answers planted in the fixture
    # the same answers counted by the number of reference steps add up to the total
    per_steps = re.findall(r"(\d+)-step questions: [\d.]+ \((\d+)/(\d+)\)", out)
    for k, c, j in per_steps:
        rows = [(r, t) for r, t in zip(results, test) if len(t["steps"]) == int(k)]
        assert int(j) == len(rows) and int(c) == sum(r["answer"] == sample.answer_of(t["answer"]) for r, t in rows)
    assert sum(int(j) for _, _, j in per_steps) == len(test)


def test_batches_and_padding_do_not_change_answers(tiny_ckpt):
    # pad_latent_to_max=False: rows with fewer steps get fewer thoughts, so rows are padded
    cfg = dict(tiny_ckpt["cfg"], pad_latent_to_max=False)
    records = sorted(tiny_ckpt["records"], key=lambda r: len(r["steps"]))[-4:]  # 2 and 3 steps
    args = (tiny_ckpt["model"], tiny_ckpt["vocab"], records, cfg)
    whole = sample.run(*args, max_new_tokens=NEW)
    one_by_one = sample.run(*args, max_new_tokens=NEW, batch_size=1)
    assert len({r["n_thoughts"] for r in whole}) > 1
    assert [r["text"] for r in whole] == [r["text"] for r in one_by_one]
    for a, b in zip(whole, one_by_one):
        assert len(a["thoughts"]) == a["n_thoughts"]
        for ta, tb in zip(a["thoughts"], b["thoughts"]):
            assert [t for t, _ in ta] == [t for t, _ in tb]
            assert [p for _, p in ta] == pytest.approx([p for _, p in tb], abs=1e-5)


def script(monkeypatch, *args):
    """Run sample.py in this process (no interpreter start-up): its SystemExit propagates."""
    monkeypatch.setattr(sys, "argv", ["sample.py", *args])
    runpy.run_path(os.path.join(ROOT, "sample.py"), run_name="__main__")


def test_script_messages(tiny_ckpt, tmp_path, monkeypatch, capsys):
    ckpt = f"--out_dir={tiny_ckpt['dir']}"
    with pytest.raises(SystemExit, match=r"python train\.py config/prosqa_cpu\.py"):
        script(monkeypatch, f"--out_dir={tmp_path}")
    script(monkeypatch, ckpt, "--latent=5", f"--max_new_tokens={NEW}", "--device=cpu")
    out = capsys.readouterr().out
    assert "warning: 5 thoughts, more than the 3" in out and "thought 5:" in out
    with pytest.raises(SystemExit, match="'elephant'.* not in this model's task vocabulary"):
        script(monkeypatch, ckpt, "--question", "Every elephant is a wumpus. Is Tom a wumpus?")
    with pytest.raises(SystemExit, match="block_size=256"):
        script(monkeypatch, ckpt, "--max_new_tokens=250", "--device=cpu")
    script(monkeypatch, ckpt, f"--question={tiny_ckpt['test'][0]['question']}",
           f"--max_new_tokens={NEW}", "--device=cpu")
    out = capsys.readouterr().out
    assert "thought 3:" in out and "answer:" in out and "expected" not in out


def test_script_analyses_run(tiny_ckpt, monkeypatch, capsys):
    ckpt = f"--out_dir={tiny_ckpt['dir']}"
    script(monkeypatch, ckpt, "--analyze=frontier", "--device=cpu")
    out = capsys.readouterr().out
    assert "after 1 thought(s)" in out and "after 2 thought(s)" in out and "k=3:" in out
    script(monkeypatch, ckpt, "--analyze=mixing", f"--max_new_tokens={NEW}", "--device=cpu")
    out = capsys.readouterr().out
    assert all(c in out for c in sample.CATEGORIES)
    rows = [line.split() for line in out.splitlines() if re.match(r"\s*\d+\s+[\d.]+\s", line)]
    assert [int(r[0]) for r in rows] == [0, 1, 2, 3]
    assert all(sum(map(float, r[1:7])) == pytest.approx(100, abs=0.5) for r in rows)


# -----------------------------------------------------------------------------
# one hand-built ProsQA graph:   Tom -> wumpus -> zumpus (target)      Bob -> numpus (neg_target)
#                                Tom -> yumpus -> dumpus -> zumpus, rompus
#                                Tom -> lempus

SYMBOLS = ["Tom", "Bob", "wumpus", "yumpus", "zumpus", "dumpus", "rompus", "numpus", "lempus"]
EDGES = [(0, 2), (0, 3), (2, 4), (3, 5), (5, 4), (5, 6), (1, 7), (0, 8)]


def graph_record():
    say = lambda p, c: ("Every " if p > 1 else "") + f"{SYMBOLS[p]} is a {SYMBOLS[c]}."
    return dict(question=" ".join(say(p, c) for p, c in EDGES) + " Is Tom a zumpus or numpus?",
                steps=[say(0, 2), say(2, 4)], answer="Tom is a zumpus.", idx_to_symbol=SYMBOLS,
                edges=[list(e) for e in EDGES], root=0, target=4, neg_target=7)


def test_frontier_values_match_reference():
    record = graph_record()
    vocab = data.Vocab.from_records([record])
    model = tiny_model(vocab, seed=1)
    ex = data.tokenize([record], vocab)[0]
    expected = {1: {2: (True, 1), 3: (True, 2), 8: (False, 0)},  # node: (reaches target, height)
                2: {4: (True, 0), 5: (True, 1)}}
    for k, nodes in expected.items():
        rows = sample.frontier_values(model, vocab, record, ex, k, CFG)
        assert {v: (reach, height) for v, _, reach, height in rows} == nodes
        assert [value for _, value, _, _ in rows] == sorted((x[1] for x in rows), reverse=True)
        prompt, _, at = data.layout(ex, vocab, "coconut", 4, 1, 3, True, n_latent=k, prompt_only=True)
        assert prompt[-1] == vocab.eot and prompt.count(vocab.latent) == k
        every = vocab.encode("Every")
        for v, value, _, _ in rows:
            head, name = prompt + every, vocab.encode(" " + SYMBOLS[v])
            if k == 1 and v == 2:  # the tokens training put there: "Every wumpus is a zumpus."
                assert ex["steps"][1][:len(every + name)] == every + name
            batch = data.collate([(head + name, [-100] * len(head + name), at)], vocab)
            with torch.no_grad():  # the plain path: the whole sequence recomputed per thought
                probs = F.softmax(model.lm_head(coconut.reference_forward(model, batch)), -1)[0]
                as_tokens = F.softmax(model.lm_head(model(batch["idx"])), -1)[0]
            at_name = [len(head) + i - 1 for i in range(len(name))]  # positions predicting it
            direct = math.prod(probs[at_name, name].tolist())
            assert value == pytest.approx(direct, rel=1e-4)
            # had the thoughts been read as <latent> tokens, the value would differ
            assert value != pytest.approx(math.prod(as_tokens[at_name, name].tolist()), rel=1e-3)


@pytest.mark.parametrize("text, category", [
    ("Tom is a wumpus.\nEvery wumpus is a zumpus.\n### Tom is a zumpus.", "correct path"),
    ("Every wumpus is a zumpus.\n### Tom is a zumpus.", "correct path"),  # after 1 thought
    ("Tom is a yumpus.\nEvery yumpus is a dumpus.\nEvery dumpus is a zumpus.\n### Tom is a zumpus.",
     "longer path"),
    ("Every dumpus is a zumpus.\n### Tom is a zumpus.", "longer path"),  # thoughts went via yumpus
    ("Tom is a wumpus.\nEvery wumpus is a numpus.\n### Tom is a numpus.", "hallucination"),
    ("Tom is a wumpus.\nEvery dumpus is a zumpus.\n### Tom is a zumpus.", "hallucination"),  # gap
    ("Tom is a blorpus.\n### Tom is a zumpus.", "hallucination"),  # no such node
    ("Bob is a numpus.\n### Tom is a numpus.", "hallucination"),  # not reachable from Tom
    ("Tom is a yumpus.\nEvery yumpus is a dumpus.\nEvery dumpus is a rompus.\n### Tom is a rompus.",
     "wrong target"),
    ("Tom is a lempus.\n### Tom is a lempus.", "wrong target"),
    ("Tom is a wumpus.\nEvery wumpus is a zumpus.\n### Tom is a numpus.", "wrong target"),
    ("### Tom is a zumpus.", "correct label"),
    ("### Tom is a numpus.", "incorrect label"),
    ("", "incorrect label"),
])
def test_classify(text, category):
    assert sample.classify(graph_record(), text) == category
