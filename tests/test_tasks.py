"""
Tests for the ProsQA / ProntoQA generators, the splits and the data CLI in tasks.py (CPU, ~10 s).

    python -m pytest tests/test_tasks.py -q
"""
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import data  # noqa: E402
import tasks  # noqa: E402
from files import load_records  # noqa: E402

# -----------------------------------------------------------------------------
# ProsQA

@pytest.fixture(scope="module")
def prosqa():
    return tasks.generate("prosqa", 2000, seed=0)

def graph(r):
    N = len(r["idx_to_symbol"])
    children, parents = [[] for _ in range(N)], [[] for _ in range(N)]
    for p, c in r["edges"]:
        children[p].append(c)
        parents[c].append(p)
    return children, parents

def check_prosqa(r, min_hops, max_hops):
    sym, root, target, neg = r["idx_to_symbol"], r["root"], r["target"], r["neg_target"]
    children, parents = graph(r)
    say = lambda p, c: f"{sym[p]} is a {sym[c]}." if not parents[p] else f"Every {sym[p]} is a {sym[c]}."
    # names are exactly the parentless nodes, and no symbol repeats
    assert len(set(sym)) == len(sym)
    assert all((s in tasks.prosqa.NAMES) == (not parents[v]) for v, s in enumerate(sym))
    assert all(s in tasks.prosqa.NAMES + tasks.prosqa.CONCEPTS for s in sym)
    # every edge stated exactly once, nothing else stated
    body, query = r["question"].rsplit(" Is ", 1)
    statements = [s + "." for s in body[:-1].split(". ")]
    assert Counter(statements) == Counter(say(p, c) for p, c in r["edges"])
    assert len(set(statements)) == len(r["edges"])
    assert query in (f"{sym[root]} a {sym[target]} or {sym[neg]}?", f"{sym[root]} a {sym[neg]} or {sym[target]}?")
    assert r["answer"] == f"{sym[root]} is a {sym[target]}."
    # target reachable from root, neg_target only from the other name
    dist = tasks.prosqa.bfs(children, root)
    assert target in dist and neg not in dist and neg in tasks.prosqa.bfs(children, 1 - root)
    assert not children[target] and not children[neg]
    # steps: a shortest root -> target path, read back from the statement text
    index = {s: v for v, s in enumerate(sym)}
    hops = [re.fullmatch(r"(?:Every )?(\w+) is a (\w+)\.", s).groups() for s in r["steps"]]
    path = [root] + [index[c] for _, c in hops]
    assert [index[p] for p, _ in hops] == path[:-1]
    assert all(c in children[p] for p, c in zip(path, path[1:]))
    assert r["steps"] == [say(p, c) for p, c in zip(path, path[1:])]
    assert path[-1] == target and len(r["steps"]) == dist[target]
    assert min_hops <= len(r["steps"]) <= max_hops

def test_prosqa_records_are_consistent(prosqa):
    for r in prosqa[:500]:
        check_prosqa(r, 3, 6)
        assert list(r) == ["question", "answer", "steps", "idx_to_symbol", "edges", "root", "target", "neg_target"]

def test_prosqa_deterministic(prosqa):
    assert tasks.generate("prosqa", 20, seed=0) == prosqa[:20]
    assert tasks.generate("prosqa", 20, seed=1) != prosqa[:20]

def test_prosqa_small_variant():
    records = tasks.generate("prosqa", 300, seed=3, n_nodes=8, min_hops=2, max_hops=3)
    for r in records:
        check_prosqa(r, 2, 3)
        assert len(r["idx_to_symbol"]) <= 8
    assert {len(r["steps"]) for r in records} == {2, 3}

def test_prosqa_knob_errors():
    for knobs in (dict(n_nodes=3), dict(min_hops=0), dict(min_hops=4, max_hops=3), dict(n_nodes=41)):
        with pytest.raises(ValueError):
            tasks.generate("prosqa", 1, **knobs)
    # impossible: 4 nodes can't give a 3-hop target; must fail fast, naming the knobs
    with pytest.raises(ValueError, match="n_nodes"):
        tasks.generate("prosqa", 1, n_nodes=4, min_hops=3, max_hops=6)

def test_prosqa_statistics_match_official(prosqa):
    # figures measured on the 800 examples the Coconut authors released. Tolerances: ~3% on
    # means; 4.5 points on step shares (~2 sd of sampling noise of 800 vs 2000 examples)
    s = tasks.dataset_stats(prosqa)
    assert s["nodes"]["mean"] == pytest.approx(22.8, rel=0.03)
    assert s["edges"]["mean"] == pytest.approx(36.0, rel=0.03)
    assert s["names"]["mean"] == pytest.approx(2.55, rel=0.04)
    assert s["question_tokens"]["mean"] == pytest.approx(360, rel=0.03)
    assert s["full_tokens"]["mean"] == pytest.approx(409, rel=0.03)
    for k, official in {3: 41, 4: 44, 5: 13, 6: 2.4}.items():
        assert s["steps"].get(k, 0) == pytest.approx(official, abs=4.5), k
    assert set(s["steps"]) == {3, 4, 5, 6}
    for k, official in {2: 58, 3: 32, 4: 8.5}.items():
        assert s["names_share"].get(k, 0) == pytest.approx(official, abs=4.5), k

# -----------------------------------------------------------------------------
# ProntoQA

def parse_rule(s):
    """'Xes are (not) Y.' / 'Every|Each X is (not) (a|an) Y.' -> (x, y, negated, y_is_concept)"""
    m = re.fullmatch(r"(\w+)es are (not )?(\w+)\.", s)
    if m:
        x, neg, y = m.groups()
        concept = y.endswith("es") and y[:-2] in tasks.prontoqa.CONCEPTS
        return x.lower(), y[:-2] if concept else y, bool(neg), concept
    x, neg, art, y = re.fullmatch(r"(?:Every|Each) (\w+) is (not )?(an? )?(\w+)\.", s).groups()
    return x, y, bool(neg), art is not None

@pytest.mark.parametrize("hops", [5, 3, 1])
def test_prontoqa_records_are_consistent(hops):
    records = tasks.generate("prontoqa", 300, seed=0, hops=hops)
    assert {r["answer"] for r in records} == {"True", "False"}
    for r in records:
        body, query = r["question"].split(" True or false: ")
        sentences = [s + "." for s in body[:-1].split(". ")]
        rules, facts = sentences[:-2], sentences[-2:]
        n_rules = 4 * hops + 3  # h links, 2h + 1 properties, h extras, b -> a, D's property
        assert len(rules) == n_rules and len(set(rules)) == n_rules
        E = facts[0].split()[0]
        assert E in tasks.prontoqa.ENTITIES
        parsed = [parse_rule(s) for s in rules]
        # the answer follows from the rules: chain forward from the facts
        known = {f.rsplit(" ", 1)[1][:-1] for f in facts}
        while True:
            more = {y for x, y, _, concept in parsed if concept and x in known} - known
            if not more:
                break
            known |= more
        derived = {(y, neg) for x, y, neg, concept in parsed if not concept and x in known}
        qneg, P = query.startswith(f"{E} is not "), query.rsplit(" ", 1)[1][:-1]
        assert ((P, qneg) in derived) != ((P, not qneg) in derived)
        assert r["answer"] == ("True" if (P, qneg) in derived else "False")
        # hops + 1 steps: "fact. rule." hops through stated rules, then the conclusion
        assert len(r["steps"]) == hops + 1
        assert r["steps"][0].startswith(facts[0][:-1] + ". ") or r["steps"][0].startswith(facts[1][:-1] + ". ")
        current = None
        for i, step in enumerate(r["steps"][:hops]):
            fact, rule = step.split(". ", 1)
            assert rule in rules  # verbatim
            x, y, neg, concept = parse_rule(rule)
            assert fact.startswith(f"{E} is a") and fact.rsplit(" ", 1)[1] == x
            assert current in (None, x)
            assert concept == (i < hops - 1)
            current = y
        assert r["steps"][hops] == f"{E} is {'not ' if neg else ''}{current}." and current == P

def test_prontoqa_deterministic():
    assert tasks.generate("prontoqa", 5, seed=0) == tasks.generate("prontoqa", 5, seed=0)
    assert tasks.generate("prontoqa", 5, seed=0) != tasks.generate("prontoqa", 5, seed=1)
    assert tasks.generate("prontoqa", 5, seed=0, hops=3) == tasks.generate("prontoqa", 5, seed=0, hops=3)
    with pytest.raises(ValueError, match="hops=0"):
        tasks.generate("prontoqa", 1, hops=0)

# -----------------------------------------------------------------------------
# Splits and the CLI

def test_splits_are_disjoint():
    for task, knobs in (("prosqa", dict(n_nodes=8, min_hops=2, max_hops=3)), ("prontoqa", {})):
        splits = tasks.make_splits(task, 200, 50, 50, seed=0, **knobs)
        assert [len(s) for s in splits] == [200, 50, 50]
        questions = [{r["question"] for r in s} for s in splits]
        assert sum(len(q) for q in questions) == 300  # no repeats within or across splits
    with pytest.raises(ValueError, match="unknown task"):
        tasks.make_splits("nope", 1, 1, 1)
    with pytest.raises(ValueError, match="gsm8k is not generated here"):
        tasks.make_splits("gsm8k", 1, 1, 1)

def test_answers_are_balanced():
    """Neither the position of the right option nor True/False gives the answer away."""
    first = tasks.dataset_stats(tasks.generate("prosqa", 2000, seed=2, n_nodes=8, min_hops=2, max_hops=3))
    assert 46 <= first["correct_first"] <= 54  # the right option listed first; 2000 draws: sd 1.1
    truths = [r["answer"] == "True" for r in tasks.generate("prontoqa", 2000, seed=2)]
    assert 0.46 <= sum(truths) / len(truths) <= 0.54


def test_ensure_splits_generates_once_and_refuses_other_knobs(tmp_path):
    knobs = dict(n_nodes=8, min_hops=2, max_hops=3)
    paths = tasks.ensure_splits("prosqa", str(tmp_path), n_train=20, seed=0, **knobs)
    written = [os.path.getmtime(p) for p in paths]
    assert tasks.ensure_splits("prosqa", str(tmp_path), n_train=20, seed=0, **knobs) == paths
    assert [os.path.getmtime(p) for p in paths] == written  # the second call wrote nothing
    for other in (dict(knobs, n_nodes=10), dict(knobs, max_hops=4)):
        with pytest.raises(SystemExit, match="generated with"):
            tasks.ensure_splits("prosqa", str(tmp_path), n_train=20, seed=0, **other)
    with pytest.raises(SystemExit, match="generated with"):
        tasks.ensure_splits("prosqa", str(tmp_path), n_train=20, seed=1, **knobs)
    with pytest.raises(SystemExit, match="python -m tasks gsm8k FOLDER"):
        tasks.ensure_splits("gsm8k", str(tmp_path / "gsm8k"))


def test_write_splits_round_trip(tmp_path):
    paths = tasks.write_splits("prosqa", str(tmp_path), n_train=20, n_valid=5, n_test=5, seed=1)
    assert [os.path.basename(p) for p in paths] == ["prosqa_train.json", "prosqa_valid.json", "prosqa_test.json"]
    assert [load_records(p) for p in paths] == list(tasks.make_splits("prosqa", 20, 5, 5, seed=1))
    assert sorted(os.listdir(tmp_path)) == sorted([os.path.basename(p) for p in paths] + ["meta.json"])  # no temp files
    assert json.loads((tmp_path / "meta.json").read_text()) == dict(
        task="prosqa", n_train=20, seed=1, n_valid=5, n_test=5)  # how they were made
    assert {k: t.SIZES for k, t in tasks.TASKS.items() if hasattr(t, "SIZES")} == {"prosqa": (17886, 300, 500), "prontoqa": (9000, 200, 800),
                                 "arith": (20000, 300, 500)}

def test_cli(tmp_path):
    run = lambda *args: subprocess.run([sys.executable, "-m", "tasks", *args], cwd=ROOT,
                                       capture_output=True, text=True, check=True).stdout
    run("prosqa", f"--data_dir={tmp_path}", "--n_train=8", "--n_valid=2", "--n_test=2",
        "--n_nodes=10", "--min_hops=2", "--max_hops=4")
    assert len(load_records(str(tmp_path / "prosqa_train.json"))) == 8
    with pytest.raises(SystemExit, match="generated with"):  # train.py asking for other data is told
        tasks.ensure_splits("prosqa", str(tmp_path), n_train=300, n_nodes=10, min_hops=2, max_hops=4)
    out = run("stats", str(tmp_path / "prosqa_valid.json"))
    assert "nodes" in out and "full sequence" in out
    run("prontoqa", f"--data_dir={tmp_path}", "--n_train=4", "--n_valid=2", "--n_test=2", "--hops=2")
    assert all(len(r["steps"]) == 3 for r in load_records(str(tmp_path / "prontoqa_train.json")))


# -----------------------------------------------------------------------------
# Chained arithmetic, and the GSM8k-Aug converter

def test_arith_records_carry_every_value():
    """Each step starts from the previous result (the question's start value first), its
    expression evaluates to its value, every value stays in 0..max_value, and the answer is
    the last value: recomputed here from the question's sentences, not from the steps."""
    ops = {"more": "+", "away": "-", "loses": "-", "sells": "-"}
    for r in tasks.generate("arith", 500, seed=4, min_steps=2, max_steps=5, max_value=40):
        body, query = r["question"].split(" How many ")
        sentences = body.split(". ")
        x = int(re.match(r"\w+ has (\d+) ", sentences[0])[1])
        assert 2 <= len(r["steps"]) <= 5 and len(sentences) == len(r["steps"]) + 1
        for sentence, step in zip(sentences[1:], r["steps"]):
            m = re.fullmatch(r"<<(\d+)([-+*/])(\d+)=(\d+)>>", step)
            assert m and int(m[1]) == x, (r, step)
            a, op = int(m[3]), m[2]
            if "doubles" in sentence or "triples" in sentence:
                assert op == "*" and a == (2 if "doubles" in sentence else 3)
            elif "half" in sentence or "third" in sentence:
                assert op == "/" and a == (2 if "half" in sentence else 3) and x % a == 0
            else:
                assert op == next(v for k, v in ops.items() if k in sentence) and str(a) in sentence
            x = {"+": x + a, "-": x - a, "*": x * a, "/": x // a}[op]
            assert int(m[4]) == x and 0 <= x <= 40
        assert r["answer"] == str(x) and r["question"].endswith("have?")


def test_arith_knobs_and_determinism():
    assert tasks.generate("arith", 20, seed=0) == tasks.generate("arith", 20, seed=0)
    assert tasks.generate("arith", 20, seed=0) != tasks.generate("arith", 20, seed=1)
    only_add = tasks.generate("arith", 50, seed=0, ops="+", max_value=100)
    assert all("+" in s for r in only_add for s in r["steps"])
    for bad in (dict(min_steps=0), dict(min_steps=4, max_steps=3), dict(ops="%"), dict(max_value=2)):
        with pytest.raises(ValueError, match="min_steps|ops|max_value"):
            tasks.generate("arith", 1, **bad)


ICOT = {"train": ["Tom has 3 apples and buys 2 more. How many?||<<3+2=5>> ## 5",
                  "A shop sells 1,200 pens at $2. How much?||<<1200*2=2400>> <<2400/1=2400>> ## 2,400"],
        "valid": ["Q?||<<1+1=2>> ## 2"], "test": ["", "Q2?||<<2*3=6>> <<6-1=5>> ## 5"]}


def test_convert_gsm8k(tmp_path):
    for split, lines in ICOT.items():
        (tmp_path / f"{split}.txt").write_text("\n".join(lines) + "\n")
    paths = tasks.gsm8k.convert(str(tmp_path), str(tmp_path / "out"))
    assert [os.path.basename(p) for p in paths] == ["gsm8k_train.json", "gsm8k_valid.json", "gsm8k_test.json"]
    train = load_records(paths[0])
    assert train[1] == {"question": "A shop sells 1,200 pens at $2. How much?",
                        "steps": ["<<1200*2=2400>>", "<<2400/1=2400>>"], "answer": "2,400"}
    assert len(load_records(paths[2])) == 1  # blank lines are skipped
    (tmp_path / "valid.txt").write_text("Q?||<<1+1=2>> ## 2\nno separator here\n")
    with pytest.raises(ValueError, match=r"valid.txt, line 2: expected 'question\|\|"):
        tasks.gsm8k.convert(str(tmp_path), str(tmp_path / "out2"))
    (tmp_path / "valid.txt").write_text("Q?||<<1+1=2>> 1+1=2 ## 2\n")
    with pytest.raises(ValueError, match="line 1: step '1\\+1=2' is not of the form"):
        tasks.gsm8k.convert(str(tmp_path), str(tmp_path / "out2"))
    assert not os.path.exists(tmp_path / "out2")  # nothing written from a malformed release
    (tmp_path / "valid.txt").write_text("Q?||<<1+1=2>> ## 2\n")
    os.remove(tmp_path / "test.txt")
    with pytest.raises(FileNotFoundError, match="test.txt"):
        tasks.gsm8k.convert(str(tmp_path), str(tmp_path / "out2"))


def test_ensure_splits_never_regenerates_the_users_files(tmp_path):
    user = [dict(question="q", steps=["s"], answer="a")]
    for split in ("train", "valid"):
        (tmp_path / f"prosqa_{split}.json").write_text(json.dumps(user))
    with pytest.raises(SystemExit, match="holds prosqa_train.json, prosqa_valid.json but not prosqa_test.json"):
        tasks.ensure_splits("prosqa", str(tmp_path), n_train=20)
    assert json.loads((tmp_path / "prosqa_train.json").read_text()) == user  # untouched
    (tmp_path / "prosqa_test.json").write_text(json.dumps(user))
    tasks.ensure_splits("prosqa", str(tmp_path), n_train=None)  # all three: used as they are
    assert json.loads((tmp_path / "prosqa_train.json").read_text()) == user
    with pytest.raises(SystemExit, match=r"holds data of your own \(no meta.json\) with 1 training "
                                         r"examples, not n_train=20: drop --n_train"):
        tasks.ensure_splits("prosqa", str(tmp_path), n_train=20)  # asked for other data: said
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(SystemExit, match="meta.json is damaged"):
        tasks.ensure_splits("prosqa", str(tmp_path), n_train=20)
    (tmp_path / "afile").write_text("")
    with pytest.raises(SystemExit, match="is a file, not a folder"):
        tasks.ensure_splits("prosqa", str(tmp_path / "afile"), n_train=20)


# -----------------------------------------------------------------------------
# A new task: one file and one line

def test_a_new_task_is_one_file_and_one_line(tmp_path):
    """docs/tasks.md's example task, added to a copy of the project exactly as the page says
    (its module saved as tasks/pointer.py, its import and TASKS lines in place of the old two),
    is generated, trained through two stages, evaluated and described with no other change."""
    with open(os.path.join(ROOT, "docs", "tasks.md")) as f:
        module, lines = re.findall(r"```python\n(.*?)```", f.read(), re.S)[:2]
    copy = tmp_path / "project"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".git", "data", "out*", "runs", "models",
                                                               "assets", "docs", "__pycache__"))
    (copy / "tasks" / "pointer.py").write_text(module)
    init = (copy / "tasks" / "__init__.py").read_text()
    old = [line for line in init.splitlines() if line.startswith(("from tasks import", "TASKS = "))]
    assert len(old) == 2
    init = init.replace(old[0], lines.splitlines()[0]).replace(old[1], lines.splitlines()[1])
    (copy / "tasks" / "__init__.py").write_text(init)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = lambda *args: subprocess.run([sys.executable, *args], cwd=copy, env=env, capture_output=True,
                                       text=True, timeout=300)
    p = run("train.py", "--task=pointer", "--n_train=256", "--max_pointer_hops=3", "--max_latent_stage=2",
            "--epochs_per_stage=1", "--num_epochs=2", "--n_layer=1", "--n_head=2", "--n_embd=32",
            "--n_val=16", "--block_size=96", "--max_new_tokens=16", "--out_dir=out")
    assert p.returncode == 0, p.stderr[-2000:]
    meta = json.loads((copy / "data" / "pointer" / "meta.json").read_text())
    assert meta == dict(task="pointer", n_train=256, seed=0, n_letters=8, min_pointer_hops=2, max_pointer_hops=3)
    r = load_records(str(copy / "data" / "pointer" / "pointer_valid.json"))[0]
    assert r["question"].endswith(f"{len(r['steps'])} hops?") and r["steps"][-1].endswith(">" + r["answer"])
    p = run("train.py", "--eval_only=True", "--out_dir=out")
    assert p.returncode == 0 and json.loads(p.stdout.strip().splitlines()[-1])["n"] == 200, p.stderr[-2000:]
    p = run("train.py", "--task=pointer", "--min_pointer_hops=0", "--out_dir=out2")  # its own check
    assert p.returncode == 1 and "min_pointer_hops=0, max_pointer_hops=3: need 1 <= min <= max" in p.stderr
    p = run("-m", "tasks", "stats", "data/pointer/pointer_test.json")
    assert p.returncode == 0 and "full sequence" in p.stdout


def test_denser_prosqa_graphs_and_data_made_before_a_knob_existed(tmp_path):
    """mean_parents makes denser graphs (issue: harder splits than training); 1.5 is the default
    and the data of before the knob (its meta.json without it) is the same data, while data
    asked for with another value is not."""
    edges = lambda mp: sum(len(r["edges"]) for r in tasks.generate("prosqa", 300, seed=5, n_nodes=8, min_hops=2,
                                                                    max_hops=3, mean_parents=mp)) / 300
    assert edges(3.0) > 1.3 * edges(1.5)
    assert tasks.generate("prosqa", 20, seed=3) == tasks.generate("prosqa", 20, seed=3, mean_parents=1.5)
    with pytest.raises(ValueError, match=r"mean_parents=0.0: must be in \[0.1, 10\]"):
        tasks.generate("prosqa", 1, mean_parents=0.0)
    knobs = dict(n_nodes=8, min_hops=2, max_hops=3)
    tasks.ensure_splits("prosqa", str(tmp_path), n_train=20, mean_parents=1.5, **knobs)  # as train.py
    meta = json.loads((tmp_path / "meta.json").read_text())
    del meta["mean_parents"]  # as written before the knob
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    tasks.ensure_splits("prosqa", str(tmp_path), n_train=20, mean_parents=1.5, **knobs)
    with pytest.raises(SystemExit, match="generated with"):
        tasks.ensure_splits("prosqa", str(tmp_path), n_train=20, mean_parents=3.0, **knobs)
