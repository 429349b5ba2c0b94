"""
Samples from a trained checkpoint: what each continuous thought leans towards, the generated
text and its answer. Without a checkpoint in out/ it uses the model shipped in models/prosqa_cpu/.

    python sample.py                               # one test question, its thoughts
    python sample.py --n_latent 6                  # 6 thoughts instead of the trained number
    python sample.py --num_samples=0               # accuracy on the whole test split
    python sample.py --question="Tom is a wumpus. Every wumpus is a yumpus. Is Tom a yumpus or zumpus?"
    python sample.py --plot=search.png             # the question's graph, shaded by each thought
    python sample.py --analyze=frontier            # or mixing (ProsQA), values (arithmetic)
    python sample.py --out_dir=out-cot             # another run's checkpoint

A ProsQA thought is shown as the nodes it values most (the probability that the language after
it names the node next; analysis.py), a ProntoQA thought by concept, any other as the tokens it
would decode to. Answers are greedy and checked as train.py checks them (the text after "#").
`--latent` is the old name of --n_latent, still accepted.
"""
import os
import random
import sys

import torch

import analysis
import checkpoint
import data
import devices
import scoring
import tasks
from configurator import check_ranges, configure
from files import load_records

# -----------------------------------------------------------------------------
out_dir = "out"  # where train.py wrote best.pt / ckpt.pt
init_from = ""  # a checkpoint path or exported folder; default out_dir/best.pt, else ckpt.pt
question = ""  # free text in the dataset's format; default: questions from the test split
num_samples = 1  # test questions (<= 0: all); the analyses use more when this is left at 1
n_latent = -1  # continuous thoughts at inference; -1: as many as trained
seed = 0  # which test questions are picked
max_new_tokens = -1  # -1: the checkpoint's own
analyze = ""  # '', 'frontier' or 'mixing' (ProsQA), 'values' (arith, GSM8k)
plot = ""  # a .png path: draw the latent search of one ProsQA question there
device = "auto"  # 'auto', 'cpu', 'cuda', 'mps'
top_k = 5  # tokens shown per decoded thought
batch_size = 128  # questions generated at once
# -----------------------------------------------------------------------------
config_keys = [k for k, v in globals().items() if not k.startswith("_") and isinstance(v, (int, float, bool, str))]
SHIPPED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models", "prosqa_cpu")


def load(path, device):
    """(model in eval mode, its Vocab, the train.py settings it was trained with)."""
    ckpt = checkpoint.load_checkpoint(path)
    model, vocab = checkpoint.model_from_checkpoint(ckpt)
    cfg = dict(ckpt["config"])
    cfg.setdefault("tokenizer", cfg.get("vocab"))  # checkpoints before the setting's rename
    return model.to(device).eval(), vocab, cfg


def pick(records, n, seed):
    """n records drawn by seed, in file order (n <= 0 or n >= len: all)."""
    if n <= 0 or n >= len(records):
        return records
    return [records[i] for i in sorted(random.Random(seed).sample(range(len(records)), n))]


def run(model, vocab, records, cfg, n_latent=-1, max_new_tokens=96, batch_size=128, top_k=5):
    """Greedy answers to records ({question, steps, answer}; answer None when unknown) at the
    model's last stage, batch by batch: scoring.answer's dicts, thoughts included."""
    examples = data.tokenize(records, vocab, questions_only=True)  # answers may hold unknown words
    last, at = cfg["max_latent_stage"] + 1, None if n_latent < 0 else n_latent
    return [r for i in range(0, len(records), batch_size)
            for r in scoring.answer(model, vocab, cfg, records[i:i + batch_size], examples[i:i + batch_size],
                                    last, at, max_new_tokens, top_k)]


def print_result(i, r, values=None, top_k=5):
    """One result: each thought as the names it values most (values: a {name: value} per
    thought), else as the tokens it decodes to."""
    print(f"question {i}: {analysis.short(r['question'])}")
    for j, top in enumerate(r["thoughts"]):
        if values:
            ranked = sorted(values[j].items(), key=lambda kv: -kv[1])[:top_k]
            print(f"  thought {j + 1}: " + ", ".join(f"{name} {p:.2f}" for name, p in ranked))
        else:
            print(f"  thought {j + 1}: " + "  ".join(f"{t!r} {p:.2f}" for t, p in top))
    print("  output:")
    for line in r["text"].split("\n"):
        print(f"    {line}")
    verdict = ""
    if r["correct"] is not None:
        verdict = "  (correct)" if r["correct"] else f"  (wrong: expected {r['truth']!r})"
    print(f"  answer: {analysis.short(repr(r['answer']), 40)}{verdict}")  # repr shows a multi-line one


# -----------------------------------------------------------------------------

if __name__ == "__main__":
    globals().update(configure({k: globals()[k] for k in config_keys}, sys.argv[1:], aliases={"latent": "n_latent"}))
    if n_latent < -1:
        raise SystemExit(f"n_latent={n_latent} must be >= -1 (-1: as trained)")
    check_ranges(globals(), least=dict(batch_size=1, top_k=1, max_new_tokens=-1))
    if max_new_tokens == 0:
        raise SystemExit("max_new_tokens=0 would print an empty answer: give >= 1, or -1 for the "
                         "checkpoint's own")
    if plot and not plot.endswith(".png"):
        raise SystemExit(f"plot={plot!r}: give a file name ending in .png")
    device, _, _ = devices.setup(device, "float32")
    torch.manual_seed(seed)
    path = init_from
    if not path:
        empty = not any(os.path.isfile(os.path.join(out_dir, f)) for f in checkpoint.CHECKPOINTS)
        if out_dir == "out" and empty and os.path.isdir(SHIPPED):  # a fresh clone
            path = os.path.relpath(SHIPPED)
            print(f"no checkpoint in out/: using the shipped model {path} "
                  "(train your own with python train.py config/prosqa_cpu.py)")
        else:
            path = checkpoint.find_checkpoint(out_dir)
    model, vocab, cfg = load(path, device)
    max_new_tokens = cfg.get("max_new_tokens", 96) if max_new_tokens < 0 else max_new_tokens
    if n_latent >= model.config.block_size:  # checked before a prompt of that length is built
        raise SystemExit(f"n_latent={n_latent} thoughts do not fit the model's context of "
                         f"block_size={model.config.block_size} positions")
    if top_k > vocab.n_tokens:
        raise SystemExit(f"top_k={top_k} is more than the model's {vocab.n_tokens} tokens")
    trained = data.trained_n_latent(cfg)
    analysis.check(analyze, plot, question, cfg, trained)
    print(f"{path}: {cfg['method']} on {cfg['task']}, trained with {trained} thought(s)")
    if n_latent > trained:
        print(f"warning: {n_latent} thoughts, more than the {trained} this model was trained with")
    if n_latent >= 0 and not data.METHODS[cfg["method"]].slot:
        print(f"warning: a {cfg['method']} model has no thoughts; --n_latent is ignored")

    if question:
        records = [dict(question=question, steps=[], answer=None)]
        parse = getattr(tasks.TASKS.get(cfg["task"]), "parse", None)  # ProsQA: the graph and answer
        try:
            records = [parse(question)] if parse else records
        except ValueError as e:
            if plot:
                raise SystemExit(f"--plot needs the question's graph, and {e}")
        # a free question has no steps to count, so "as trained" means K*c thoughts
        n_latent = trained if n_latent < 0 else n_latent
    else:
        here = os.path.join(path if os.path.isdir(path) else os.path.dirname(path), f"{cfg['task']}_test.json")
        test_path = here if os.path.isfile(here) else tasks.split_path(cfg["task"], cfg["data_dir"], "test")
        try:
            records = load_records(test_path)
        except (FileNotFoundError, ValueError) as e:
            raise SystemExit(str(e))
        # one question is too few for an analysis: the paper's test split has 500
        n = {"": num_samples, "frontier": 3, "mixing": 500, "values": 500}[analyze] if num_samples == 1 else num_samples
        records = pick(records, 1 if plot else n, seed)
        if plot and not analysis.has_graph(records[0]):
            raise SystemExit(f"--plot needs ProsQA records with their graph; {test_path} has none")
    generate = lambda k, top=top_k: run(model, vocab, records, cfg, k, max_new_tokens, batch_size, top)

    try:
        if analyze:
            n_latent = trained if n_latent < 0 else n_latent
        if analyze == "frontier":
            analysis.print_frontier(model, vocab, records, cfg, n_latent)
        elif analyze == "mixing":
            analysis.print_mixing(records, {k: generate(k) for k in range(n_latent + 1)})
        elif analyze == "values":
            analysis.print_values(records, generate(n_latent, 5), cfg["c_thought"])
        else:
            results = generate(n_latent)
            examples = data.tokenize(records[:analysis.SHOW], vocab, questions_only=True)
            for i, (record, ex, r) in enumerate(zip(records, examples, results)):
                values = analysis.thought_values(model, vocab, record, ex, r["n_latent"], cfg)
                print_result(i + 1, r, values, top_k)
            if len(results) > analysis.SHOW:
                print(f"... and {len(results) - analysis.SHOW} more, not shown")
            correct, judged, mean_tokens = scoring.accuracy(results)
            if len(results) > 1 and judged:
                print(f"accuracy {correct / judged:.3f} ({correct}/{judged}), "
                      f"mean generated tokens {mean_tokens:.1f} (thoughts included)")
                for n_steps, (c, j) in sorted(scoring.by_steps(results).items()):
                    print(f"  {n_steps}-step questions: {c / j:.3f} ({c}/{j})")
            if plot:
                print(f"wrote {analysis.draw(model, vocab, records[0], results[0], cfg, plot)}")
    except ValueError as e:  # unknown words for a task vocabulary, a question that does not fit
        raise SystemExit(f"error: {e}")
