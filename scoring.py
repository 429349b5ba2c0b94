"""
Scoring: a model answers a batch of questions greedily, and each answer is checked the way its
task reads answers (the text after the last '#'). train.py's validation, its --eval_only test
and sample.py all score through answer(); mcnemar() says whether two methods that answered the
same questions differ by more than chance.

    python scoring.py A.json B.json     # two --eval_out files: accuracies and McNemar's test
    python scoring.py table 'runs/arith-{method}-s{seed}/test.json' coconut pause_as_thought cot
"""
import glob
import json
import math
import re
import statistics
import sys

import torch
import torch.nn.functional as F

import coconut
import data
import tasks


@torch.no_grad()
def answer(model, vocab, cfg, records, examples, stage, n_latent=None, max_new_tokens=96, top_k=0):
    """Greedy answers to a batch: records ({question, steps, answer}; answer None when unknown)
    and their tokenized examples, laid out at `stage` of the curriculum of cfg (train.py's
    settings: method, c_thought, max_latent_stage, pad_latent_to_max, task) with n_latent
    thoughts (None: the stage's). One dict per question: text (generated), answer (read from
    it), correct (None without a reference), steps_match (whether the language steps equal the
    reference's remaining steps; None where none remain), n_latent, n_tokens (generated,
    thoughts included), step1_match (the first of those steps only), and with top_k > 0
    thoughts: each thought's top_k (token, probability) through the LM head, what it would say
    if it were decoded (it never is)."""
    layout_args = dict(c_thought=cfg["c_thought"], max_latent_stage=cfg["max_latent_stage"],
                       pad_latent_to_max=cfg["pad_latent_to_max"])
    prompts = [data.layout(ex, vocab, cfg["method"], stage, n_latent=n_latent, prompt_only=True,
                           **layout_args) for ex in examples]
    for i, row in enumerate(prompts):
        if len(row.ids) + max_new_tokens > model.config.block_size:
            raise ValueError(f"question {i + 1} of the batch needs {len(row.ids)} prompt tokens + "
                             f"max_new_tokens={max_new_tokens}, more than the model's context "
                             f"block_size={model.config.block_size}; shorten it or lower max_new_tokens")
    batch = data.collate(prompts, vocab, next(model.parameters()).device)
    tokens, thoughts = coconut.generate(model, batch, max_new_tokens, vocab.eos, return_thoughts=True)
    if top_k > 0:
        probs, top = F.softmax(model.logits(thoughts).float(), -1).topk(top_k, -1)  # (B, n, top_k)
        probs, top = probs.tolist(), top.tolist()
    results = []
    for b, (record, row) in enumerate(zip(records, prompts)):
        text, n_new = decode_output(vocab, tokens[b].tolist())
        n = row.ids.count(vocab.latent)  # a row may have fewer thoughts than the batch
        truth = record["answer"]
        dropped = data.stage_plan(len(record["steps"]), cfg["method"], stage, **layout_args).dropped
        said, left = text.split("#")[0].strip(), record["steps"][dropped:]  # the steps in language
        r = dict(question=record["question"], text=text, answer=answer_of(text, cfg["task"]),
                 truth=truth, n_latent=n, n_tokens=n_new + n, n_steps=len(record["steps"]),
                 steps_match=said == "\n".join(left).strip() if left else None,
                 step1_match=said.split("\n")[0].strip() == left[0].strip() if left else None)
        r["correct"] = None if truth is None else r["answer"] == answer_of(truth, cfg["task"])
        if top_k > 0:
            r["thoughts"] = [[(vocab.decode([t]), p) for t, p in zip(top[b][j], probs[b][j])]
                             for j in range(n)]
        results.append(r)
    return results


def decode_output(vocab, row):
    """(text, tokens generated) of one generated row: up to its first <eos>, which counts as
    generated but is not decoded."""
    row = row[:row.index(vocab.eos) + 1] if vocab.eos in row else row
    return vocab.decode([t for t in row if t != vocab.eos]), len(row)


def answer_of(text, task=""):
    """The answer in a generated or reference text: the text after the last '#' ("... ### Tom
    is a lempus." -> "Tom is a lempus."), unless the task reads answers its own way (a number
    for GSM8k and arithmetic: tasks/gsm8k.py)."""
    own = getattr(tasks.TASKS.get(task), "answer", None)
    return own(text) if own else text.split("#")[-1].strip()


def counts(results):
    """What validation adds up over questions (a list, so that DDP ranks can sum theirs):
    correct, steps matched, first steps matched, questions with steps left, tokens."""
    return [sum(bool(r[k]) for r in results) for k in ("correct", "steps_match", "step1_match")] + \
        [sum(r["steps_match"] is not None for r in results), sum(r["n_tokens"] for r in results)]


def metrics(counts, n):
    """Validation's figures from the summed counts of n questions: accuracy, CoT exact match and
    first-step match (None where no step is left in language), mean tokens generated."""
    correct, steps, step1, with_steps, tokens = counts
    em = lambda k: k / with_steps if with_steps else None
    return dict(val_acc=correct / n, cot_em=em(steps), step1_em=em(step1), mean_tokens=tokens / n, n=n)


def accuracy(results):
    """(correct, judged, mean tokens) over results; judged counts those with a known answer."""
    judged = [r["correct"] for r in results if r["correct"] is not None]
    return sum(judged), len(judged), sum(r["n_tokens"] for r in results) / max(len(results), 1)


def by_steps(results):
    """{number of reference steps: (correct, judged)}, to compare methods by depth."""
    counts = {}
    for r in results:
        if r["correct"] is not None:
            c, j = counts.get(r["n_steps"], (0, 0))
            counts[r["n_steps"]] = (c + r["correct"], j + 1)
    return counts


def mcnemar(a, b):
    """McNemar's exact test of two methods on the same questions, given as lists of correct
    flags: (only A right, only B right, two-sided p). Only the questions on which the two
    disagree count; under 'no difference' each is equally likely to go either way, so
    p = min(1, 2 P[Binomial(n, 1/2) <= min]) over the n that disagree."""
    if len(a) != len(b):
        raise ValueError(f"McNemar's test pairs answers to the same questions: {len(a)} against {len(b)}")
    only_a = sum(x and not y for x, y in zip(a, b))
    only_b = sum(y and not x for x, y in zip(a, b))
    n, k = only_a + only_b, min(only_a, only_b)
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n) if n else 1.0
    return only_a, only_b, p


def load_results(path):
    """The per-question results an --eval_out file holds (its 'results' list)."""
    with open(path) as f:
        saved = json.load(f)
    if not isinstance(saved, dict) or "results" not in saved:
        raise ValueError(f"{path} holds no per-question results: write them with train.py "
                         f"--eval_only=True --eval_out={path}")
    return saved["results"]


def table(pattern, methods):
    """Mean, standard deviation and minimum over seeds of each method's accuracy (%), from the
    --eval_out files that `pattern` names with {method} and {seed} (runs/arith-{method}-s{seed}/
    test.json); then the first method against each other one, seed by seed, on the same
    questions: the lead and McNemar's exact test."""
    if "{method}" not in pattern or "{seed}" not in pattern:
        raise ValueError(f"the pattern {pattern!r} must name {{method}} and {{seed}}, e.g. "
                         "runs/arith-{method}-s{seed}/test.json")
    found, methods = {}, list(dict.fromkeys(methods))  # each once, in order
    for m in methods:
        for path in sorted(glob.glob(pattern.format(method=m, seed="*"))):
            seed = re.fullmatch(re.escape(pattern).replace(re.escape("{seed}"), r"(\d+)")
                                .replace(re.escape("{method}"), re.escape(m)), path)
            if seed:
                found.setdefault(m, {})[int(seed[1])] = [r["correct"] for r in load_results(path)]
    found = {m: dict(sorted(by_seed.items())) for m, by_seed in found.items()}  # seed 10 after 9
    pct = lambda c: 100 * sum(c) / len(c)
    spread = lambda xs: f"{statistics.mean(xs):6.2f} {statistics.stdev(xs) if len(xs) > 1 else 0:5.2f} {min(xs):5.1f}"
    w = max([18] + [len(m) for m in found])  # the name column
    lines = [f"{'method':{w}} {'seeds':>5} {'mean':>6} {'std':>5} {'min':>5}  per seed"]
    for m, by_seed in found.items():
        xs = [pct(c) for c in by_seed.values()]
        lines.append(f"{m:{w}} {len(xs):>5} {spread(xs)}  " + " ".join(f"{s}:{pct(c):.1f}" for s, c in by_seed.items()))
    first = methods[0]
    for other in [m for m in found if m != first and first in found]:
        seeds = sorted(set(found[first]) & set(found[other]))
        if not seeds:
            continue
        lines.append(f"\n{first} - {other}, per seed (McNemar's exact test on the same questions)")
        leads = []
        for s in seeds:
            a, b = found[first][s], found[other][s]
            only_a, only_b, p = mcnemar(a, b)
            leads.append(pct(a) - pct(b))
            lines.append(f"  seed {s}: {leads[-1]:+6.1f}  only {first} right {only_a:4}, only {other} "
                         f"right {only_b:4}, p = {p:.2g}")
        lines.append(f"  {'lead':{w - 2}} {len(leads):>5} {spread(leads)}")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "table":
        try:
            print(table(sys.argv[2], sys.argv[3:]))
        except (OSError, ValueError) as e:  # a bad pattern, a file that is no --eval_out
            raise SystemExit(f"error: {e}")
        sys.exit(0)
    if len(sys.argv) != 3:
        raise SystemExit("usage: python scoring.py A.json B.json   (two --eval_out files of the same "
                         "questions)\n       python scoring.py table 'runs/arith-{method}-s{seed}/test.json' "
                         "METHOD [METHOD ...]")
    try:
        a, b = (load_results(p) for p in sys.argv[1:])
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: {e}")
    if [r["question"] for r in a] != [r["question"] for r in b]:
        raise SystemExit(f"{sys.argv[1]} and {sys.argv[2]} answer different questions: McNemar's "
                         "test pairs the same questions")
    only_a, only_b, p = mcnemar([r["correct"] for r in a], [r["correct"] for r in b])
    for path, rs in zip(sys.argv[1:], (a, b)):
        print(f"{path}: {sum(r['correct'] for r in rs) / len(rs):.4f} of {len(rs)}")
    print(f"only the first right: {only_a}, only the second: {only_b}, McNemar's exact p = {p:.4g}")
