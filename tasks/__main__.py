"""
Writes a task's splits, converts a task's original files, or prints a data file's statistics:

    python -m tasks prosqa --n_train=2000          # data/prosqa/prosqa_{train,valid,test}.json
    python -m tasks arith --max_steps=5 --data_dir=data/arith5
    python -m tasks gsm8k path/to/icot/gsm8k       # GSM8k-Aug's text files -> data/gsm8k/
    python -m tasks stats FILE
"""
import argparse
import time

import tasks

parser = argparse.ArgumentParser(prog="python -m tasks", description=__doc__.split("\n")[1])
sub = parser.add_subparsers(dest="cmd", required=True)
for name, t in tasks.TASKS.items():
    if hasattr(t, "convert"):
        p = sub.add_parser(name, help=f"convert {name}'s original files into the official JSON")
        p.add_argument("src", help="the folder with the original files")
    else:
        p = sub.add_parser(name, help=f"write {name}_{{train,valid,test}}.json, by default {t.SIZES} examples")
        for split in ("train", "valid", "test"):
            p.add_argument(f"--n_{split}", type=int, default=None)
        p.add_argument("--seed", type=int, default=0)
        for k, v in t.KNOBS.items():  # the task's knobs, as train.py takes them
            p.add_argument(f"--{k}", type=type(v), default=v)
    p.add_argument("--data_dir", default=tasks.task_dir(name))
sub.add_parser("stats", help="print the statistics of a data file").add_argument("file")
args = vars(parser.parse_args())
cmd = args.pop("cmd")
try:
    if cmd == "stats":
        tasks.print_stats(args["file"])
    elif hasattr(tasks.TASKS[cmd], "convert"):
        for path in tasks.TASKS[cmd].convert(args["src"], args["data_dir"]):
            print(f"wrote {path}")
    else:
        t0 = time.time()
        for path in tasks.write_splits(cmd, **args):
            print(f"wrote {path}")
        print(f"took {time.time() - t0:.1f}s")
except (FileNotFoundError, ValueError) as e:  # a bad knob, a missing or malformed file
    raise SystemExit(f"error: {e}")
