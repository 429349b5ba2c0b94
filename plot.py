"""
Validation accuracy against training time, from the log.jsonl of each run given.

    python plot.py out out-cot out-nocot --out=accuracy.png     # needs matplotlib (optional)

Runs named METHOD-sSEED share a colour per method. Without matplotlib it prints the same
curves as a table.
"""
import json
import os
import re
import sys


def curve(run):
    """(minutes of training and evaluation so far, validation accuracy) after every epoch."""
    with open(os.path.join(run, "log.jsonl")) as f:
        lines = [json.loads(line) for line in f]
    t, points = 0.0, []
    for line in lines:
        t += line["epoch_time"] + line["eval_time"]
        points.append((t / 60, line["val_acc"]))
    return points


def main(argv):
    runs = [a for a in argv if not a.startswith("--")]
    out = next((a.split("=", 1)[1] for a in argv if a.startswith("--out=")), "accuracy.png")
    if not runs:
        raise SystemExit(__doc__)
    curves = {run: curve(run) for run in runs}
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        for run, points in curves.items():
            print(run + ": " + ", ".join(f"{m:.1f} min {100 * a:.1f}%" for m, a in points))
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
    plt.xlabel("training + evaluation time (minutes)")
    plt.ylabel("validation accuracy")
    plt.grid(alpha=0.3)
    plt.legend(loc="lower right", fontsize="small")
    plt.tight_layout()
    plt.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
