"""
Scoring: a model answers a batch of questions greedily, and each answer is checked the way its
task reads answers (the text after the last '#'). train.py's validation, its --eval_only test
and sample.py all score through answer(); mcnemar() says whether two methods that answered the
same questions differ by more than chance.

    python scoring.py A.json B.json     # two --eval_out files: accuracies and McNemar's test
"""
import json
import math
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
    thoughts included), and with top_k > 0 thoughts: each thought's top_k (token, probability)
    through the LM head, what it would say if it were decoded (it never is)."""
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
        left = "\n".join(record["steps"][dropped:]).strip()  # the steps still in language
        r = dict(question=record["question"], text=text, answer=answer_of(text, cfg["task"]),
                 truth=truth, n_latent=n, n_tokens=n_new + n, n_steps=len(record["steps"]),
                 steps_match=text.split("#")[0].strip() == left if dropped < len(record["steps"]) else None)
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
        return json.load(f)["results"]


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python scoring.py A.json B.json   (files written by train.py "
                         "--eval_only=True --eval_out=FILE on the same questions)")
    a, b = (load_results(p) for p in sys.argv[1:])
    if [r["question"] for r in a] != [r["question"] for r in b]:
        raise SystemExit(f"{sys.argv[1]} and {sys.argv[2]} answer different questions: McNemar's "
                         "test pairs the same questions")
    only_a, only_b, p = mcnemar([r["correct"] for r in a], [r["correct"] for r in b])
    for path, rs in zip(sys.argv[1:], (a, b)):
        print(f"{path}: {sum(r['correct'] for r in rs) / len(rs):.4f} of {len(rs)}")
    print(f"only the first right: {only_a}, only the second: {only_b}, McNemar's exact p = {p:.4g}")
