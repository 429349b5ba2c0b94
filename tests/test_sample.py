"""sample.py: the script on a tiny checkpoint (thoughts named by node, the latent-search
picture, its errors), the frontier values, the mixing categories, and the shipped model."""
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

import analysis
import coconut
import data
import sample
import scoring
import tasks
from model import GPT, GPTConfig
from tasks import prontoqa
from files import load_records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the train.py settings sample.py reads, as a ProsQA Coconut run with K=3 would save them
CFG = dict(task="prosqa", method="coconut", c_thought=1, max_latent_stage=3,
           pad_latent_to_max=True, tokenizer="task")
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


def trained_a_little(model, vocab, records, steps=30):
    """A few AdamW steps of the curriculum's last stage, so the model is not just noise."""
    examples = data.tokenize(records, vocab)
    rows = [data.layout(ex, vocab, "coconut", 4, max_latent_stage=3, pad_latent_to_max=True) for ex in examples]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        coconut.forward_backward(model, [data.collate(rows, vocab)])
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def greedy_texts(model, vocab, records, k):
    """The model's greedy outputs with k thoughts, one question at a time, decoded here
    (independently of sample.run): generation stops at <eos> or after NEW tokens."""
    texts = []
    for ex in data.tokenize(records, vocab, questions_only=True):
        row = data.layout(ex, vocab, "coconut", 4, max_latent_stage=3, pad_latent_to_max=True,
                          n_latent=k, prompt_only=True)
        out = coconut.generate(model, data.collate([row], vocab), NEW, vocab.eos)[0].tolist()
        out = out[:out.index(vocab.eos)] if vocab.eos in out else out
        texts.append(vocab.decode(out))
    return texts


def answer(text):
    return text.split("#")[-1].strip()  # ProsQA's answers have no thousands separators


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """A checkpoint in train.py's layout of a model trained for a few steps in this test, and a
    test split whose answers are, for some questions, exactly what the model generates (so
    accuracy is neither 0 nor 1)."""
    root = tmp_path_factory.mktemp("sample")
    records = tasks.generate("prosqa", 30, seed=1, n_nodes=8, min_hops=2, max_hops=3)
    vocab = data.Vocab.from_records(records)  # the words of all 30, as if they were the train split
    test = records[24:]
    model = trained_a_little(tiny_model(vocab), vocab, records[:24])
    cfg = dict(CFG, data_dir=str(root / "data"))
    by_k = {k: greedy_texts(model, vocab, test, k) for k in (0, 3)}
    for i, r in enumerate(test[:5]):  # 0, 2, 4 match the 3-thought answers; 1, 3 the 0-thought
        r["answer"] = answer(by_k[3 if i % 2 == 0 else 0][i])
    os.makedirs(root / "data")
    with open(root / "data" / "prosqa_test.json", "w") as f:
        json.dump(test, f)
    torch.save(dict(model=model.state_dict(), model_args=dict(vars(model.config)), config=cfg,
                    vocab=vocab.tokens), root / "best.pt")
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
    assert thoughts == ([] if latent == 0 else ["1", "2", "3"] * analysis.SHOW)
    # each thought is named by the graph's concepts it values most, highest first
    names = {s for r in tiny_ckpt["test"] for s in r["idx_to_symbol"]}
    for line in re.findall(r"thought \d+: (.*)", out):
        ranked = [item.rsplit(" ", 1) for item in line.split(", ")]
        assert len(ranked) == 5 and all(name in names for name, _ in ranked)
        values = [float(v) for _, v in ranked]
        assert values == sorted(values, reverse=True) and 0 <= values[-1] <= values[0] <= 1
    correct, n = map(int, re.search(r"accuracy [\d.]+ \((\d+)/(\d+)\)", out).groups())
    test = tiny_ckpt["test"]
    right = [answer(t) == answer(r["answer"]) for t, r in
             zip(greedy_texts(tiny_ckpt["model"], tiny_ckpt["vocab"], test, latent), test)]
    assert (correct, n) == (sum(right), len(test))
    assert all(right[i] for i in ((0, 2, 4) if latent == 3 else (1, 3)))  # planted in the fixture
    # the same answers counted by the number of reference steps
    per_steps = re.findall(r"(\d+)-step questions: [\d.]+ \((\d+)/(\d+)\)", out)
    by_steps = {}
    for t, ok in zip(test, right):
        c, j = by_steps.get(len(t["steps"]), (0, 0))
        by_steps[len(t["steps"])] = (c + ok, j + 1)
    assert {int(k): (int(c), int(j)) for k, c, j in per_steps} == by_steps


def test_batches_and_padding_do_not_change_answers(tiny_ckpt):
    # pad_latent_to_max=False: rows with fewer steps get fewer thoughts, so rows are padded
    cfg = dict(tiny_ckpt["cfg"], pad_latent_to_max=False)
    records = sorted(tiny_ckpt["records"], key=lambda r: len(r["steps"]))[-4:]  # 2 and 3 steps
    args = (tiny_ckpt["model"], tiny_ckpt["vocab"], records, cfg)
    whole = sample.run(*args, max_new_tokens=NEW)
    one_by_one = sample.run(*args, max_new_tokens=NEW, batch_size=1)
    assert len({r["n_latent"] for r in whole}) > 1
    assert [r["text"] for r in whole] == [r["text"] for r in one_by_one]
    for a, b in zip(whole, one_by_one):
        assert len(a["thoughts"]) == a["n_latent"]
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
    with pytest.raises(SystemExit, match=r"latent=-5 must be >= -1 \(-1: as trained\)"):
        script(monkeypatch, ckpt, "--latent=-5")
    with pytest.raises(SystemExit, match="batch_size=-3 must be >= 1"):
        script(monkeypatch, ckpt, "--batch_size=-3")
    # checked before anything is allocated or printed as the model's
    with pytest.raises(SystemExit, match="n_latent=1000000000000000 thoughts do not fit .* block_size=256"):
        script(monkeypatch, ckpt, "--latent=1000000000000000")  # the old flag name still works
    with pytest.raises(SystemExit, match=r"top_k=100000 is more than the model's \d+ tokens"):
        script(monkeypatch, ckpt, "--top_k=100000")
    with pytest.raises(SystemExit, match="max_new_tokens=0 would print an empty answer"):
        script(monkeypatch, ckpt, "--max_new_tokens=0")
    record = tiny_ckpt["test"][0]
    script(monkeypatch, ckpt, f"--question={record['question']}", f"--max_new_tokens={NEW}", "--device=cpu")
    out = capsys.readouterr().out
    assert "thought 3:" in out and "answer:" in out
    # the question's graph is parsed: its right answer is known, and thoughts name its nodes
    sym = record["idx_to_symbol"]
    truth = f"{sym[record['root']]} is a {sym[record['target']]}."  # not the planted answer
    assert "(correct)" in out or f"expected {truth!r}" in out
    assert re.search(r"thought 1: \w+ [\d.]+, ", out)


def test_plot_draws_one_question(tiny_ckpt, tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    import plot
    ckpt = f"--out_dir={tiny_ckpt['dir']}"
    out = tmp_path / "search.png"
    script(monkeypatch, ckpt, f"--plot={out}", "--latent=2", f"--max_new_tokens={NEW}", "--device=cpu")
    assert f"wrote {out}" in capsys.readouterr().out
    with open(out, "rb") as f:
        head = f.read(24)
    assert head.startswith(b"\x89PNG")  # two panels side by side, in the figure's own size
    assert (int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")) == (
        round(2 * plot.PANEL_W * plot.DPI), round(plot.PANEL_H * plot.DPI))


def test_plot_errors(tiny_ckpt, tmp_path, monkeypatch):
    ckpt = f"--out_dir={tiny_ckpt['dir']}"
    png = f"--plot={tmp_path / 'x.png'}"
    with pytest.raises(SystemExit, match="needs the question's graph.*Is NAME a X or Y"):
        script(monkeypatch, ckpt, png, "--question=Tom is a wumpus. What is Tom?")
    with pytest.raises(SystemExit, match="ending in .png"):
        script(monkeypatch, ckpt, f"--plot={tmp_path / 'x.pdf'}")
    other = tmp_path / "prontoqa"  # a checkpoint of another task: no graph to draw
    other.mkdir()
    ckpt_data = torch.load(os.path.join(tiny_ckpt["dir"], "best.pt"), weights_only=True)
    ckpt_data["config"] = dict(ckpt_data["config"], task="prontoqa")
    torch.save(ckpt_data, other / "best.pt")
    with pytest.raises(SystemExit, match="ProsQA question's graph; this model was trained on 'prontoqa'"):
        script(monkeypatch, f"--out_dir={other}", png)
    assert not os.path.exists(tmp_path / "x.png")


def test_shipped_model_answers_as_readme_says():
    """models/prosqa_cpu is the quick start's model; the README states its test accuracy."""
    with open(os.path.join(ROOT, "README.md")) as f:
        stated = re.search(r"answers (\d+) of its (\d+) test questions", f.read())
    assert stated, "the README states the shipped model's test accuracy"
    model, vocab, cfg = sample.load(sample.SHIPPED, "cpu")
    test = load_records(os.path.join(sample.SHIPPED, "prosqa_test.json"))
    results = sample.run(model, vocab, test, cfg, max_new_tokens=48, batch_size=500)
    correct, judged, _ = scoring.accuracy(results)
    stated_correct, stated_n = map(int, stated.groups())
    # another CPU's float rounding may flip a near-tie or two; a broken layout or loader
    # costs hundreds of answers
    assert judged == stated_n and abs(correct - stated_correct) <= 2, (correct, judged)


def test_script_analyses_run(tiny_ckpt, monkeypatch, capsys):
    ckpt = f"--out_dir={tiny_ckpt['dir']}"
    script(monkeypatch, ckpt, "--analyze=frontier", "--device=cpu")
    out = capsys.readouterr().out
    assert "after 1 thought(s)" in out and "after 2 thought(s)" in out and "k=3:" in out
    script(monkeypatch, ckpt, "--analyze=mixing", f"--max_new_tokens={NEW}", "--device=cpu")
    out = capsys.readouterr().out
    assert all(c in out for c in analysis.CATEGORIES)
    rows = [line.split() for line in out.splitlines() if re.match(r"\s*\d+\s+[\d.]+\s", line)]
    assert [int(r[0]) for r in rows] == [0, 1, 2, 3]
    test = tiny_ckpt["test"]  # the 6 questions of the split, the analysis's default of 500 or all
    for k, row in enumerate(rows):  # each k's shares, from outputs generated and classified here
        kinds = [analysis.classify(t, text) for t, text in zip(test, greedy_texts(tiny_ckpt["model"], tiny_ckpt["vocab"], test, k))]
        shares = [100 * kinds.count(c) / len(kinds) for c in analysis.CATEGORIES]
        assert [float(x) for x in row[1:7]] == pytest.approx(shares, abs=0.051)


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
        rows = analysis.frontier_values(model, vocab, record, ex, k, CFG)
        assert {v: (reach, height) for v, _, reach, height in rows} == nodes
        assert [value for _, value, _, _ in rows] == sorted((x[1] for x in rows), reverse=True)
        prompt, _, at = data.layout(ex, vocab, "coconut", 4, 1, 3, True, n_latent=k, prompt_only=True)
        assert prompt[-1] == vocab.eot and prompt.count(vocab.latent) == k
        every = vocab.encode("Every")
        for v, value, _, _ in rows:
            head, name = prompt + every, vocab.encode(" " + SYMBOLS[v])
            if k == 1 and v == 2:  # the tokens training put there: "Every wumpus is a zumpus."
                assert ex["steps"][1][:len(every + name)] == every + name
            batch = data.collate([data.Row(head + name, [-100] * len(head + name), at)], vocab)
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
    assert analysis.classify(graph_record(), text) == category


def test_values_analysis_on_arithmetic(tmp_path, monkeypatch, capsys):
    """--analyze=values: how often thought k, read through the LM head, names step k's result;
    recomputed here thought by thought for a small model trained in the test."""
    records = tasks.generate("arith", 40, seed=2, min_steps=2, max_steps=3)
    vocab = data.Vocab.from_records(records)
    model = trained_a_little(tiny_model(vocab, seed=3), vocab, records[:30])
    test = records[30:]
    cfg = dict(CFG, task="arith", data_dir=str(tmp_path))
    with open(tmp_path / "arith_test.json", "w") as f:
        json.dump(test, f)
    torch.save(dict(model=model.state_dict(), model_args=dict(vars(model.config)), config=cfg,
                    vocab=vocab.tokens), tmp_path / "best.pt")
    script(monkeypatch, f"--out_dir={tmp_path}", "--analyze=values", f"--max_new_tokens={NEW}", "--device=cpu")
    rows = re.findall(r"^\s+(\d)\s+(\d)\s+([\d.]+)%\s+([\d.]+)%\s+(\d+)  ", capsys.readouterr().out, re.M)
    expected = {}
    for r in test:
        ex = data.tokenize([r], vocab, questions_only=True)[0]
        row = data.layout(ex, vocab, "coconut", 4, max_latent_stage=3, pad_latent_to_max=True, prompt_only=True)
        _, thoughts = coconut.generate(model, data.collate([row], vocab), NEW, vocab.eos, return_thoughts=True)
        top = model.lm_head(thoughts[0]).topk(5, -1).indices.tolist()  # (3 thoughts, 5)
        values = [s.split("=")[1].rstrip(">") for s in r["steps"]]
        for k, ids in enumerate(top[:len(values)]):
            said = [vocab.decode([i]).strip() for i in ids]
            e = expected.setdefault(k + 1, [0, 0, 0])
            e[0] += said[0] == values[k]
            e[1] += values[k] in said
            e[2] += 1
    assert [int(k) for k, *_ in rows] == sorted(expected) == [1, 2, 3]
    for k, step, t1, t5, n in rows:
        h1, h5, m = expected[int(k)]
        assert (int(step), int(n)) == (int(k), m)
        assert (float(t1), float(t5)) == pytest.approx((100 * h1 / m, 100 * h5 / m), abs=0.051)
    with pytest.raises(SystemExit, match="reads a ProsQA question's graph; this model was trained on 'arith'"):
        script(monkeypatch, f"--out_dir={tmp_path}", "--analyze=frontier", "--device=cpu")


def test_prontoqa_thoughts_are_named_by_concept(tmp_path, monkeypatch, capsys):
    """On a ProntoQA model each thought is shown as the concepts it values most: the
    probability of "<entity> is a <concept>" after it, recomputed here on the plain path;
    ProsQA's analyses refuse with a message."""
    records = tasks.generate("prontoqa", 6, seed=4)
    vocab = data.Vocab.from_records(records)
    model = tiny_model(vocab, seed=2)
    cfg = dict(CFG, task="prontoqa", max_latent_stage=6, data_dir=str(tmp_path))
    with open(tmp_path / "prontoqa_test.json", "w") as f:
        json.dump(records, f)
    torch.save(dict(model=model.state_dict(), model_args=dict(vars(model.config)), config=cfg,
                    vocab=vocab.tokens), tmp_path / "best.pt")
    script(monkeypatch, f"--out_dir={tmp_path}", "--num_samples=0", "--max_new_tokens=8", "--device=cpu")
    out = capsys.readouterr().out
    blocks = re.split(r"^question \d+: ", out, flags=re.M)[1:]
    assert len(blocks) == analysis.SHOW
    for record, block in zip(records, blocks):
        entity = record["steps"][0].split()[0]  # "Fae is a lempus. ..."
        concepts = set(re.findall(r"\b([a-z]+pus)(?:es)?\b", record["question"].lower()))
        assert analysis.pronto_concepts(record["question"]) == (entity, sorted(concepts))
        assert len(concepts) == 14 and concepts <= set(prontoqa.CONCEPTS)  # the generator's 14
        lines = re.findall(r"thought (\d+): (.*)", block)
        assert [int(k) for k, _ in lines] == [1, 2, 3, 4, 5, 6]
        for _, line in lines:
            ranked = [item.rsplit(" ", 1) for item in line.split(", ")]
            assert len(ranked) == 5 and {name for name, _ in ranked} <= concepts
            values = [float(v) for _, v in ranked]
            assert values == sorted(values, reverse=True) and 0 <= values[-1] <= values[0] <= 1
    # the first question's values after 2 thoughts, one concept at a time on the plain path
    record, ex = records[0], data.tokenize(records[:1], vocab, questions_only=True)[0]
    values = analysis.concept_values(model, vocab, record, ex, 2, cfg)[1]
    entity, concepts = analysis.pronto_concepts(record["question"])
    prompt, _, at = data.layout(ex, vocab, "coconut", 7, 1, 6, True, n_latent=2, prompt_only=True)
    for c in concepts:
        head, name = prompt + vocab.encode(f"{entity} is"), vocab.encode(" " + prontoqa.with_article(c))
        batch = data.collate([data.Row(head + name, [-100] * len(head + name), at)], vocab)
        with torch.no_grad():
            probs = F.softmax(model.lm_head(coconut.reference_forward(model, batch)), -1)[0]
        direct = math.prod(probs[[len(head) + i - 1 for i in range(len(name))], name].tolist())
        assert values[c] == pytest.approx(direct, rel=1e-4)
    for kind in ("frontier", "mixing"):
        with pytest.raises(SystemExit, match="reads a ProsQA question's graph; this model was trained "
                                             "on 'prontoqa' .*names the concepts"):
            script(monkeypatch, f"--out_dir={tmp_path}", f"--analyze={kind}", "--device=cpu")
