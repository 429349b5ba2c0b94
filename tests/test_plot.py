"""plot.py: the curves it reads from log.jsonl, its table without matplotlib, its picture with;
the latent-search figure's layout, its labels, and the message without matplotlib."""
import builtins
import json
import random
import struct

import pytest

import plot
import tasks


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
    with pytest.raises(SystemExit, match="pip install matplotlib"):  # the latent-search figure
        plot.latent_search(HAND, [{}], "title")


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


# -----------------------------------------------------------------------------
# the latent-search figure. A hand-written graph:
#   Tom -> wumpus -> zumpus (answer) ; Tom -> yumpus -> dumpus -> zumpus ; dumpus -> rompus
#   Bob -> numpus (the other option) -> lempus          (Bob's part: not reachable from Tom)

HAND = dict(idx_to_symbol=["Tom", "Bob", "wumpus", "yumpus", "zumpus", "dumpus", "rompus", "numpus", "lempus"],
            edges=[[0, 2], [0, 3], [2, 4], [3, 5], [5, 4], [5, 6], [1, 7], [7, 8]],
            root=0, target=4, neg_target=7)


def test_layout_columns_are_bfs_distances():
    pos = plot.graph_layout(HAND)
    columns = {HAND["idx_to_symbol"][v]: c for v, (c, _) in pos.items()}
    # by hand: distances from Tom; Bob's part by its depth from Bob, in a band below
    assert columns == dict(Tom=0, wumpus=1, yumpus=1, zumpus=2, dumpus=2, rompus=3,
                           Bob=0, numpus=1, lempus=2)
    reachable_rows = [pos[v][1] for v in (0, 2, 3, 4, 5, 6)]
    assert min(pos[v][1] for v in (1, 7, 8)) > max(reachable_rows)  # the band below
    assert len(set(pos.values())) == len(pos)  # no two nodes in one place


def label_boxes(fig):
    """[(axis, the window extent of each node label)] after drawing."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return [[t.get_bbox_patch().get_window_extent(renderer) for t in ax.texts] for ax in fig.axes if ax.texts]


@pytest.mark.parametrize("knobs", [dict(n_nodes=8, min_hops=2, max_hops=3), {}])  # the CPU config's, full size
def test_node_labels_never_overlap(knobs):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt
    rng = random.Random(0)
    for record in tasks.generate("prosqa", 5, seed=3, **knobs):
        values = [{v: rng.random() for v in range(len(record["idx_to_symbol"]))} for _ in range(3)]
        fig = plot.latent_search(record, values, "Is Tom a lempus or scrompus?")
        for boxes in label_boxes(fig):
            assert len(boxes) == len(record["idx_to_symbol"])
            for i, a in enumerate(boxes):
                for b in boxes[i + 1:]:
                    assert not a.overlaps(b), (record["idx_to_symbol"], a, b)
        plt.close(fig)


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head.startswith(b"\x89PNG")
    return struct.unpack(">II", head[16:24])  # the IHDR chunk: width, height


@pytest.mark.parametrize("K, grid", [(1, (1, 1)), (3, (3, 1)), (6, (3, 2))])
def test_one_panel_per_thought(tmp_path, K, grid):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt
    values = [{v: (v + k) % 4 / 3 for v in range(9)} for k in range(K)]
    fig = plot.latent_search(HAND, values, "Is Tom a zumpus or numpus?")
    panels = [ax for ax in fig.axes if ax.texts]
    assert [ax.get_title() for ax in panels] == [f"thought {k + 1}" for k in range(K)]
    cmap = plt.get_cmap("YlOrRd")
    for k, ax in enumerate(panels):  # each node shaded by the value this thought gives it
        by_name = {t.get_text(): t.get_bbox_patch().get_facecolor() for t in ax.texts}
        for v, name in enumerate(HAND["idx_to_symbol"]):
            assert by_name[name] == pytest.approx(cmap(values[k][v]))
    fig.savefig(tmp_path / "x.png", dpi=plot.DPI)
    plt.close(fig)
    cols, rows = grid
    assert png_size(tmp_path / "x.png") == (round(cols * plot.PANEL_W * plot.DPI), round(rows * plot.PANEL_H * plot.DPI))


def test_curves_by_epoch_mark_the_stage_changes(tmp_path, monkeypatch, capsys):
    lines = [dict(epoch=e, stage=s, epoch_time=60.0, eval_time=0.0, val_acc=a)
             for e, s, a in ((3, 1, 0.8), (4, 1, 0.9), (5, 2, 0.4), (6, 2, 0.6))]
    write_log(tmp_path / "coconut-s0", lines)
    assert plot.curve(tmp_path / "coconut-s0", "epoch") == [(3, 0.8), (4, 0.9), (5, 0.4), (6, 0.6)]
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt
    drawn = []
    monkeypatch.setattr(plt, "axvline", lambda x, **kw: drawn.append(x))
    plot.main([str(tmp_path / "coconut-s0"), "--by=epoch", f"--out={tmp_path / 'e.png'}"])
    assert drawn == [4.5] and (tmp_path / "e.png").stat().st_size > 0  # stage 2 begins at epoch 5
    with pytest.raises(SystemExit):
        plot.main([str(tmp_path / "coconut-s0"), "--by=step"])
