"""plot.py: the curves it reads from log.jsonl, its table without matplotlib, its picture with."""
import builtins
import json

import pytest

import plot


def write_log(run, lines):
    run.mkdir()
    with open(run / "log.jsonl", "w") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")


def test_curve_accumulates_training_and_evaluation_time(tmp_path):
    write_log(tmp_path / "coconut-s0", [dict(epoch=1, epoch_time=50.0, eval_time=10.0, val_acc=0.5),
                                        dict(epoch=2, epoch_time=80.0, eval_time=10.0, val_acc=0.75)])
    assert plot.curve(tmp_path / "coconut-s0") == [(1.0, 0.5), (2.5, 0.75)]


def test_table_without_matplotlib(tmp_path, monkeypatch, capsys):
    write_log(tmp_path / "cot-s1", [dict(epoch=1, epoch_time=30.0, eval_time=0.0, val_acc=0.25)])
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    plot.main([str(tmp_path / "cot-s1")])
    assert "cot-s1: 0.5 min 25.0%" in capsys.readouterr().out


def test_picture_colours_seeds_of_a_method_alike(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt
    runs = []
    for name in ("coconut-s0", "coconut-s1", "cot-s0"):
        write_log(tmp_path / name, [dict(epoch=1, epoch_time=60.0, eval_time=0.0, val_acc=0.5)])
        runs.append(str(tmp_path / name))
    out = tmp_path / "acc.png"
    plot.main(runs + [f"--out={out}"])
    assert out.read_bytes().startswith(b"\x89PNG")
    colors = [line.get_color() for line in plt.gca().get_lines()]  # the figure plot.py drew
    plt.close("all")
    assert colors[0] == colors[1] != colors[2]
