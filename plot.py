"""
Pictures: validation accuracy against training time (or epoch), from the log.jsonl of each run
given; and the latent search of one ProsQA question (drawn by `python sample.py --plot=FILE.png`).

    python plot.py out out-cot out-nocot --out=accuracy.png     # needs matplotlib
    python plot.py runs/arith-coconut-s* --by=epoch              # stage changes marked

Runs named METHOD-sSEED share a colour per method. Without matplotlib the curves print as a
table.
"""
import json
import math
import os
import re
import sys

from tasks import prosqa


def log_of(run):
    with open(os.path.join(run, "log.jsonl")) as f:
        return [json.loads(line) for line in f]


def curve(run, by="time"):
    """(minutes of training and evaluation so far, or the epoch; validation accuracy) after
    every epoch."""
    t, points = 0.0, []
    for line in log_of(run):
        t += line["epoch_time"] + line["eval_time"]
        points.append((line["epoch"] if by == "epoch" else t / 60, line["val_acc"]))
    return points


def main(argv):
    runs = [a for a in argv if not a.startswith("--")]
    out = next((a.split("=", 1)[1] for a in argv if a.startswith("--out=")), "accuracy.png")
    by = next((a.split("=", 1)[1] for a in argv if a.startswith("--by=")), "time")
    if not runs or by not in ("time", "epoch"):
        raise SystemExit(__doc__)
    curves = {run: curve(run, by) for run in runs}
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        for run, points in curves.items():
            print(run + ": " + ", ".join((f"epoch {x}" if by == "epoch" else f"{x:.1f} min") +
                                         f" {100 * a:.1f}%" for x, a in points))
        print("(pip install matplotlib for a picture)")
        return
    plt.figure(figsize=(6, 4))
    colors = {}
    for run, points in curves.items():
        name = os.path.basename(run.rstrip("/"))
        method = re.sub(r"-s\d+$", "", name)  # runs named METHOD-sSEED: one colour per method
        label = None if method in colors else method  # one legend entry per method
        color = colors.setdefault(method, f"C{len(colors) % 10}")
        plt.plot(*zip(*points), color=color, marker="o", markersize=3, label=label)
    if by == "epoch":  # the first run's stage changes, the curriculum's steps down
        log = log_of(runs[0])
        for a, b in zip(log, log[1:]):
            if b["stage"] != a["stage"]:
                plt.axvline(a["epoch"] + 0.5, color="0.8", linewidth=1, zorder=0)
    plt.xlabel("training + evaluation time (minutes)" if by == "time" else "epoch (grey: a stage begins)")
    plt.ylabel("validation accuracy")
    plt.grid(alpha=0.3)
    plt.legend(loc="lower right", fontsize="small")
    plt.tight_layout()
    plt.savefig(out, dpi=120)
    print(f"wrote {out}")


# -----------------------------------------------------------------------------
# The latent search: a ProsQA graph, one panel per continuous thought, each node shaded by the
# value the thought gives it (sample.node_values: the probability of its name as the next step)

PANEL_W, PANEL_H, DPI = 6.4, 4.8, 100  # inches per panel, dots per inch


def pyplot():
    """matplotlib's pyplot, drawing to files; a clear message if it is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("drawing needs matplotlib: pip install matplotlib") from None
    return plt


def graph_layout(record):
    """{node: (column, row)}: the column of a node the root reaches is its BFS distance from the
    root (root in column 0); the other nodes sit in a band below, by their depth from their
    own sources. Within a column, nodes are ordered by the mean row of their parents, which
    keeps most edges short and uncrossed."""
    n = len(record["idx_to_symbol"])
    children, parents = prosqa.adjacency(n, record["edges"])
    dist = prosqa.bfs(children, record["root"])
    depth = {}  # longest path from a source, for the nodes the root does not reach
    for v in sorted(set(range(n)) - set(dist), key=lambda v: len(prosqa.bfs(parents, v))):
        depth[v] = 1 + max((depth[u] for u in parents[v] if u in depth), default=-1)
    pos, top = {}, 0.0

    def parent_row(v):  # where v's parents already sit; the band's top if none does
        rows = [pos[u][1] for u in parents[v] if u in pos]
        return sum(rows) / len(rows) if rows else top

    for band in (dist, depth):
        columns = {}
        for v, c in band.items():
            columns.setdefault(c, []).append(v)
        for c in sorted(columns):  # left to right, so parents are placed first
            for i, v in enumerate(sorted(columns[c], key=lambda v: (parent_row(v), v))):
                pos[v] = (c, top + i)
        top += max((len(vs) for vs in columns.values()), default=0) + 0.8  # a gap between bands
    return pos


def latent_search(record, values, title):
    """A figure of the question's graph, one panel per thought. values[k] = {node: value} after
    k+1 thoughts. Returns the matplotlib figure (PANEL_W x PANEL_H inches per panel)."""
    plt = pyplot()
    from matplotlib.patches import FancyArrowPatch
    sym, root = record["idx_to_symbol"], record["root"]
    marks = {record["target"]: ("tab:green", 2.2), record["neg_target"]: ("tab:blue", 2.2)}
    pos = graph_layout(record)
    n_cols = max(c for c, _ in pos.values()) + 1
    n_rows = max(r for _, r in pos.values()) + 1
    n_latent = len(values)
    cols = min(n_latent, 3)
    rows = math.ceil(n_latent / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * PANEL_W, rows * PANEL_H), dpi=DPI,
                             squeeze=False)
    cmap, font = plt.get_cmap("YlOrRd"), 11 if n_rows <= 6 else 8 if n_rows <= 10 else 6.5
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= n_latent:
            continue
        ax.set_xlim(-0.6, n_cols - 0.4)
        ax.set_ylim(n_rows - 0.5, -0.9)  # row 0 at the top
        ax.set_title(f"thought {k + 1}", fontsize=10)
        for p, c in record["edges"]:
            ax.add_patch(FancyArrowPatch(pos[p], pos[c], arrowstyle="-|>", mutation_scale=8,
                                         shrinkA=14, shrinkB=14, color="0.6", lw=0.7))
        for v, (x, y) in pos.items():
            value = values[k].get(v)
            face = "white" if value is None else cmap(value)
            edge, width = marks.get(v, ("0.3", 0.6))
            ax.text(x, y, sym[v], ha="center", va="center", fontsize=font,
                    weight="bold" if v == root else "normal",
                    bbox=dict(boxstyle="round,pad=0.25", fc=face, ec=edge, lw=width))
    fig.suptitle(title, fontsize=12)
    fig.subplots_adjust(left=0.01, right=0.9, bottom=0.08, top=0.86 if rows == 1 else 0.9, wspace=0.04, hspace=0.12)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1))
    fig.colorbar(sm, cax=fig.add_axes([0.92, 0.2, 0.012, 0.6]),
                 label="value: probability of the node's name as the next step")
    handles = [plt.Line2D([], [], marker="s", ls="", mfc="white", mec=c, mew=2, label=l)
               for c, l in (("tab:green", "answer (the option the root reaches)"), ("tab:blue", "the other option"))]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=10, frameon=False)
    return fig


if __name__ == "__main__":
    main(sys.argv[1:])
