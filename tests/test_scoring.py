"""scoring.py: McNemar's exact test against values worked out by hand, and its command line on
two --eval_out files. (Answering a batch is proved through train.py and sample.py: tests/
test_train.py and test_sample.py.)"""
import json
import os
import subprocess
import sys

import pytest

import scoring

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("only_a,only_b,both,neither,p", [
    (0, 5, 10, 3, 2 / 2 ** 5),  # 5 discordant, all one way: 2 * (1/2)^5 = 0.0625
    (1, 9, 0, 0, 2 * (1 + 10) / 2 ** 10),  # P[X <= 1], X ~ Bin(10, 1/2) = 11/1024, doubled
    (9, 1, 7, 7, 2 * (1 + 10) / 2 ** 10),  # symmetric
    (3, 3, 5, 0, 1.0),  # 2 * P[X <= 3 | n=6] = 2 * 42/64 > 1: capped at 1
    (0, 0, 4, 4, 1.0),  # nothing to tell them apart
    (2, 10, 0, 1, 2 * (1 + 12 + 66) / 2 ** 12),  # 79/4096 doubled = 0.03857...
])
def test_mcnemar_exact(only_a, only_b, both, neither, p):
    a = [True] * only_a + [False] * only_b + [True] * both + [False] * neither
    b = [False] * only_a + [True] * only_b + [True] * both + [False] * neither
    got = scoring.mcnemar(a, b)
    assert got[:2] == (only_a, only_b) and got[2] == pytest.approx(p, rel=1e-12)
    with pytest.raises(ValueError, match="same questions"):
        scoring.mcnemar(a, b[:-1] if b else [True])


def test_compare_two_result_files(tmp_path):
    def write(name, correct):
        results = [dict(question=f"q{i}", correct=c) for i, c in enumerate(correct)]
        path = tmp_path / name
        path.write_text(json.dumps(dict(val_acc=sum(correct) / len(correct), results=results)))
        return str(path)
    a = write("a.json", [True] * 8 + [False] * 2)
    b = write("b.json", [False] * 5 + [True] * 3 + [False] * 2)
    p = subprocess.run([sys.executable, "scoring.py", a, b], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "only the first right: 5, only the second: 0, McNemar's exact p = 0.0625" in p.stdout
    other = tmp_path / "c.json"
    other.write_text(json.dumps(dict(results=[dict(question="x", correct=True)] * 10)))
    p = subprocess.run([sys.executable, "scoring.py", a, str(other)], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 1 and "answer different questions" in p.stderr
    line = tmp_path / "line.json"  # eval_only's results line, not an --eval_out file
    line.write_text(json.dumps(dict(val_acc=0.5, n=10)))
    p = subprocess.run([sys.executable, "scoring.py", a, str(line)], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 1 and "holds no per-question results: write them with" in p.stderr


def test_table_over_seeds(tmp_path):
    """The table's mean, spread, minimum and per-seed McNemar, against figures worked out by hand."""
    right = {("a", 0): 8, ("a", 1): 6, ("a", 2): 10, ("b", 0): 5, ("b", 1): 6, ("b", 2): 4}  # of 10
    for (m, s), n in right.items():
        d = tmp_path / f"x-{m}-s{s}"
        d.mkdir()
        results = [dict(question=f"q{i}", correct=i < n) for i in range(10)]  # the first n right
        (d / "test.json").write_text(json.dumps(dict(results=results)))
    (tmp_path / "x-a-s9").mkdir()  # a seed without its file yet: left out
    out = scoring.table(str(tmp_path / "x-{method}-s{seed}" / "test.json"), ["a", "b", "c"])
    # a: 80, 60, 100 -> mean 80.00, sample std 20.00, min 60.0; b: 50, 60, 40 -> 50.00, 10.00, 40.0
    assert "a                      3  80.00 20.00  60.0  0:80.0 1:60.0 2:100.0" in out
    assert "b                      3  50.00 10.00  40.0" in out and "\nc " not in out
    # seed 0: a right on q0-q7, b on q0-q4: 3 only a, 0 only b: p = 2/8 = 0.25
    assert "seed 0:  +30.0  only a right    3, only b right    0, p = 0.25" in out
    assert "seed 1:   +0.0  only a right    0, only b right    0, p = 1" in out
    # leads 30, 0, 60: mean 30.00, std 30.00, min 0.0
    assert "\n  lead" + " " * 17 + "3  30.00 30.00   0.0" in out  # in line with the methods' columns

    with pytest.raises(ValueError, match="must name {method} and {seed}"):
        scoring.table(str(tmp_path / "x-a-s0" / "test.json"), ["a"])
