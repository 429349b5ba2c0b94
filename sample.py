"""
Samples from a trained checkpoint: what each continuous thought leans towards, the generated
text and its answer; a picture of the latent search; the paper's two analyses of ProsQA
(Section 5). Without a checkpoint in out/ it uses the model shipped in models/prosqa_cpu/.

    python sample.py                               # one test question, its thoughts decoded
    python sample.py --latent 6                    # 6 thoughts instead of the trained number
    python sample.py --plot=search.png             # the question's graph, shaded by each thought
    python sample.py --num_samples=500             # accuracy on 500 test questions
    python sample.py --question="Tom is a wumpus. Every wumpus is a yumpus. Is Tom a yumpus or zumpus?"
    python sample.py --analyze=frontier            # values of frontier nodes after k thoughts
    python sample.py --analyze=mixing              # k thoughts, then language: path categories
    python sample.py --out_dir=out-arith --analyze=values   # arithmetic: does thought k hold step k's value?
    python sample.py --out_dir=out-cot             # another run's checkpoint
    python sample.py --out_dir=out-prontoqa        # ProntoQA: thoughts named by concept

For a ProsQA question, a thought's value for a node is the probability that the language after
the thought names that node next ("Every <node> is a ..."), which is how the paper reads its
latent search; for ProntoQA, a concept's value is the probability of "Fae is a <concept>".
Answers are greedy and checked the way train.py checks them (the text after "#", exact match).
"""
import os
import random
import re
import sys
from collections import Counter

import torch
import torch.nn.functional as F

import coconut
import common
import data
import tasks
from configurator import check_ranges, configure

# -----------------------------------------------------------------------------
out_dir = "out"  # where train.py wrote best.pt / ckpt.pt
init_from = ""  # a checkpoint path or exported folder; default out_dir/best.pt, else ckpt.pt
question = ""  # free text in the dataset's format; default: questions from the test split
num_samples = 1  # test questions (<= 0: all); the analyses use more when this is left at 1
latent = -1  # continuous thoughts at inference; -1: as many as trained
seed = 0  # which test questions are picked
max_new_tokens = -1  # -1: the checkpoint's own
analyze = ""  # '', 'frontier' or 'mixing' (ProsQA), 'values' (arith, GSM8k)
plot = ""  # a .png path: draw the latent search of one ProsQA question there
device = "auto"  # 'auto', 'cpu', 'cuda', 'mps'
top_k = 5  # tokens shown per decoded thought
batch_size = 128  # questions generated at once
# -----------------------------------------------------------------------------
config_keys = [k for k, v in globals().items() if not k.startswith("_") and isinstance(v, (int, float, bool, str))]

SHOW = 5  # questions printed in full; the rest only count towards the accuracy
SHIPPED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models", "prosqa_cpu")
CATEGORIES = ("correct path", "longer path", "hallucination", "wrong target",
              "correct label", "incorrect label")


def load(path, device):
    """(model in eval mode, its Vocab, the train.py settings it was trained with)."""
    ckpt = common.load_checkpoint(path)
    model, vocab = common.model_from_checkpoint(ckpt)
    return model.to(device).eval(), vocab, ckpt["config"]


def trained_thoughts(cfg):
    """Thoughts the model saw at its last stage (K*c for Coconut, 0 for CoT)."""
    return data.stage_plan(10**9, cfg["method"], cfg["max_latent_stage"] + 1, cfg["c_thought"],
                           cfg["max_latent_stage"], True).n_latent


def prompt(ex, vocab, cfg, n_latent=None):
    """question\\n <bot> <latent> x n <eot>: the final stage's prompt (n_latent=None: as trained)."""
    return data.layout(ex, vocab, cfg["method"], cfg["max_latent_stage"] + 1, cfg["c_thought"],
                       cfg["max_latent_stage"], cfg["pad_latent_to_max"], n_latent=n_latent,
                       prompt_only=True)


def pick(records, n, seed):
    """n records drawn by seed, in file order (n <= 0 or n >= len: all)."""
    if n <= 0 or n >= len(records):
        return records
    return [records[i] for i in sorted(random.Random(seed).sample(range(len(records)), n))]


@torch.no_grad()
def run(model, vocab, records, cfg, latent=-1, max_new_tokens=96, batch_size=128, top_k=5):
    """Greedy generation for records ({question, steps, answer}; answer None when unknown).

    Returns one dict per record: question, text (generated), answer (extracted), truth,
    correct (None without truth), n_thoughts, n_tokens (thoughts included, as train.py counts),
    thoughts (per thought, its top_k (token, probability) pairs through the LM head).
    """
    device = next(model.parameters()).device
    examples = data.tokenize(records, vocab, questions_only=True)  # answers may hold unknown words
    results = []
    for i in range(0, len(examples), batch_size):
        prompts = [prompt(ex, vocab, cfg, None if latent < 0 else latent)
                   for ex in examples[i:i + batch_size]]
        for j, (ids, _, _) in enumerate(prompts):
            if len(ids) + max_new_tokens > model.config.block_size:
                raise ValueError(f"question {i + j + 1} needs {len(ids)} prompt tokens + "
                                 f"max_new_tokens={max_new_tokens}, more than the model's context "
                                 f"block_size={model.config.block_size}; shorten it or lower "
                                 "--max_new_tokens")
        batch = data.collate(prompts, vocab, device)
        tokens, thoughts = coconut.generate(model, batch, max_new_tokens, vocab.eos, return_thoughts=True)
        # what each thought would say if it were decoded as a token (it never is)
        probs, top = F.softmax(model.lm_head(thoughts).float(), -1).topk(top_k, -1)  # (B, n, top_k)
        probs, top, tokens = probs.tolist(), top.tolist(), tokens.tolist()
        for b, row in enumerate(prompts):
            record = records[i + b]
            text, n_new = data.decode_output(vocab, tokens[b])
            n = row.ids.count(vocab.latent)  # a row may have fewer thoughts than the batch
            truth, answer = record["answer"], data.answer_of(text)
            results.append(dict(
                question=record["question"], text=text, answer=answer, truth=truth,
                correct=None if truth is None else answer == data.answer_of(truth),
                n_thoughts=n, n_tokens=n_new + n,
                thoughts=[[(vocab.decode([t]), p) for t, p in zip(top[b][j], probs[b][j])]
                          for j in range(n)]))
    return results


def by_steps(records, results):
    """{number of reference steps (hops): (correct, judged)}, to compare methods by depth."""
    counts = {}
    for record, r in zip(records, results):
        if r["correct"] is not None:
            c, j = counts.get(len(record["steps"]), (0, 0))
            counts[len(record["steps"])] = (c + r["correct"], j + 1)
    return counts


def accuracy(results):
    """(correct, judged, mean tokens) over results; judged counts those with a known answer."""
    judged = [r["correct"] for r in results if r["correct"] is not None]
    return sum(judged), len(judged), sum(r["n_tokens"] for r in results) / max(len(results), 1)


def short(text, n=70):
    return text if len(text) <= 2 * n + 5 else text[:n] + " ... " + text[-n:]


def print_result(i, r, top_k=5):
    """One result: each thought as the names it values most (r["values"], a {name: value} per
    thought, for ProsQA and ProntoQA), else as the tokens it decodes to."""
    print(f"question {i}: {short(r['question'])}")
    for j, top in enumerate(r["thoughts"]):
        if r.get("values"):
            ranked = sorted(r["values"][j].items(), key=lambda kv: -kv[1])[:top_k]
            print(f"  thought {j + 1}: " + ", ".join(f"{name} {p:.2f}" for name, p in ranked))
        else:
            print(f"  thought {j + 1}: " + "  ".join(f"{t!r} {p:.2f}" for t, p in top))
    print("  output:")
    for line in r["text"].split("\n"):
        print(f"    {line}")
    verdict = ""
    if r["correct"] is not None:
        verdict = "  (correct)" if r["correct"] else f"  (wrong: expected {r['truth']!r})"
    print(f"  answer: {short(repr(r['answer']), 40)}{verdict}")  # repr shows a multi-line one


@torch.no_grad()
def name_values(model, vocab, ex, k, cfg, head, names):
    """After k thoughts, teacher-force the text `head` and score each of `names` by the
    probability of its tokens (their product; no renormalisation). One batched forward."""
    ids, _, at = prompt(ex, vocab, cfg, n_latent=k)  # ends with <eot>
    head = ids + vocab.encode(head)  # a step right after <eot> has no leading space
    rows = []
    for name in names:
        name = vocab.encode(name)
        rows.append(data.Row(head + name, [-100] * len(head) + name, at))  # labels mark the name tokens
    batch = data.collate(rows, vocab, next(model.parameters()).device)  # <latent> -> continuous
    h = coconut.latent_forward(model, batch)  # (B, T, C)
    logp = F.log_softmax(model.lm_head(h[:, :-1]).float(), -1)  # (B, T-1, V) predicts t+1
    y = batch["labels"][:, 1:]
    lp = logp.gather(-1, y.clamp(min=0)[..., None])[..., 0]  # (B, T-1)
    return (lp * (y != -100)).sum(1).exp().tolist()  # product of the name's probabilities


# -----------------------------------------------------------------------------
# ProsQA analyses. A record carries its graph: idx_to_symbol, edges [parent, child], root, target.

def graph(record):
    return tasks.adjacency(len(record["idx_to_symbol"]), record["edges"])


def node_values(model, vocab, record, ex, K, cfg):
    """[{node: value} after 1, 2, ..., K thoughts] over every concept node (a person's name
    never follows "Every")."""
    _, parents = graph(record)
    nodes = [v for v in range(len(record["idx_to_symbol"])) if parents[v]]
    names = [" " + record["idx_to_symbol"][v] for v in nodes]
    return [dict(zip(nodes, name_values(model, vocab, ex, k, cfg, "Every", names))) for k in range(1, K + 1)]


def frontier_values(model, vocab, record, ex, k, cfg):
    """The values after k thoughts of the nodes at distance k/c from the root (the frontier
    that the next language step would name).

    Returns [(node, value, reaches_target, height)] sorted by value, height being the distance
    to the nearest leaf.
    """
    children, _ = graph(record)
    dist = tasks.bfs(children, record["root"])
    nodes = [v for v, d in dist.items() if d == k // cfg["c_thought"]]  # step k/c names them
    if not nodes:  # the graph is shallower than k steps
        return []
    values = name_values(model, vocab, ex, k, cfg, "Every", [" " + record["idx_to_symbol"][v] for v in nodes])
    out = []
    for v, value in zip(nodes, values):
        reach = tasks.bfs(children, v)
        height = min(d for u, d in reach.items() if not children[u])
        out.append((v, value, record["target"] in reach, height))
    return sorted(out, key=lambda x: -x[1])


STEP = re.compile(r"(?:Every )?(\S+) is an? (\S+)\.")


def classify(record, text):
    """One of CATEGORIES for a generated output (the paper's Section 5.1), by its steps:
    - no steps: 'correct label' / 'incorrect label' by the answer;
    - a step that is not an edge, does not continue the previous one, does not parse, or
      starts at a node the root cannot reach: 'hallucination';
    - the path ends at the target and the answer is right: 'correct path' if the whole path is
      a shortest one, else 'longer path' (after k thoughts the text resumes mid-path, so the
      part in thoughts counts as the shortest way from the root to where the text starts);
    - otherwise (a valid path to another node, or a wrong answer): 'wrong target'.
    """
    correct = data.answer_of(text) == data.answer_of(record["answer"])
    lines = [s.strip() for s in text.split("#")[0].split("\n") if s.strip()]
    if not lines:
        return "correct label" if correct else "incorrect label"
    index = {s: i for i, s in enumerate(record["idx_to_symbol"])}
    edges = {tuple(e) for e in record["edges"]}
    path = []
    for line in lines:
        m = STEP.fullmatch(line)
        if not m or m[1] not in index or m[2] not in index:
            return "hallucination"
        p, c = index[m[1]], index[m[2]]
        if (p, c) not in edges or (path and path[-1] != p):
            return "hallucination"
        path += [p, c] if not path else [c]
    dist = tasks.bfs(graph(record)[0], record["root"])
    if path[0] not in dist:
        return "hallucination"
    if path[-1] != record["target"] or not correct:
        return "wrong target"
    shortest = dist[path[0]] + len(path) - 1 == dist[record["target"]]
    return "correct path" if shortest else "longer path"


def has_graph(record):
    return {"edges", "idx_to_symbol", "root", "target"} <= record.keys()


def check_graph(records):
    if not all(has_graph(r) for r in records):
        raise SystemExit("the analyses need ProsQA records with their graph (edges, "
                         "idx_to_symbol, root, target), as tasks.py generates them")


def draw(model, vocab, record, result, cfg, path):
    """The latent search of one question, written to path (a PNG)."""
    import plot  # matplotlib is needed only here
    ex = data.tokenize([record], vocab, questions_only=True)[0]
    values = node_values(model, vocab, record, ex, result["n_thoughts"], cfg)
    verdict = "" if result["correct"] is None else " (right)" if result["correct"] else " (wrong)"
    query = record["question"][record["question"].rindex(" Is ") + 1:]
    title = f"{query}   The model answers \"{result['answer']}\"{verdict}"
    fig = plot.latent_search(record, values, title)
    fig.savefig(path, dpi=plot.DPI)
    return path


def print_frontier(model, vocab, records, cfg, K):
    check_graph(records)
    examples = data.tokenize(records, vocab, questions_only=True)  # answers may hold unknown words
    ks = range(cfg["c_thought"], K + 1, cfg["c_thought"])  # one step per c thoughts
    values = {k: {True: [], False: []} for k in ks}  # by whether the node reaches the target
    for i, (record, ex) in enumerate(zip(records, examples)):
        sym = record["idx_to_symbol"]
        if i < SHOW:
            print(f"question {i + 1}: {short(record['question'])}")
            print(f"  root {sym[record['root']]}, target {sym[record['target']]}")
        for k in ks:
            rows = frontier_values(model, vocab, record, ex, k, cfg)
            for v, value, reach, height in rows:
                values[k][reach].append(value)
            if i < SHOW and rows:
                print(f"  after {k} thought(s), 'Every' then:   value  reaches target  height")
                for v, value, reach, height in rows:
                    print(f"    {sym[v]:>24}  {value:.3f}  {'yes' if reach else 'no':>14}  {height:>6}")
    print(f"mean value of frontier nodes over {len(records)} questions:")
    mean = lambda xs: f"{sum(xs) / len(xs):.3f} ({len(xs)} nodes)" if xs else "-"
    for k, by_reach in values.items():
        print(f"  k={k}: reaching the target {mean(by_reach[True])}, not reaching it {mean(by_reach[False])}")


def print_mixing(model, vocab, records, cfg, K, max_new_tokens, batch_size):
    check_graph(records)
    print(f"{len(records)} questions; k thoughts, then <eot> and language (shares in %)")
    print(f"{'k':>2}  " + "  ".join(f"{c:>15}" for c in CATEGORIES) + "  accuracy")
    for k in range(K + 1):
        results = run(model, vocab, records, cfg, k, max_new_tokens, batch_size)
        kinds = [classify(rec, r["text"]) for rec, r in zip(records, results)]
        correct, judged, _ = accuracy(results)
        print(f"{k:>2}  " + "  ".join(f"{100 * kinds.count(c) / len(kinds):>15.1f}" for c in CATEGORIES)
              + f"  {100 * correct / judged:>8.1f}")


# -----------------------------------------------------------------------------
# ProntoQA. Thought k stands for a step like "Fae is a lempus. Each lempus is a vumpus.", so the
# language after k thoughts would say "Fae is a <concept>." next: a thought's value for a
# concept is the probability of " a <concept>" after "Fae is".

PRONTO_QUERY = re.compile(r"True or false: (\w+) is ")
PRONTO_CONCEPT = re.compile(r"\b([A-Za-z]+pus)(?:es)?\b")  # wumpus, Wumpuses, ...


def pronto_concepts(question):
    """(entity, concepts) of a ProntoQA question: its "True or false: NAME is" and every
    fictional '-pus' concept it names, sorted."""
    m = PRONTO_QUERY.search(question)
    if not m:
        raise ValueError(f"a ProntoQA question ends with 'True or false: NAME is ...', not {short(question, 30)!r}")
    return m[1], sorted({c.lower() for c in PRONTO_CONCEPT.findall(question)})


def concept_values(model, vocab, record, ex, K, cfg):
    """[{concept: value} after 1, 2, ..., K thoughts] over the question's concepts."""
    entity, concepts = pronto_concepts(record["question"])
    names = [" " + tasks.with_article(c) for c in concepts]
    return [dict(zip(concepts, name_values(model, vocab, ex, k, cfg, f"{entity} is", names)))
            for k in range(1, K + 1)]


# -----------------------------------------------------------------------------
# Arithmetic (arith, GSM8k-Aug): steps are <<expression=value>>. Does thought k, read through the
# LM head, say the value of the step it replaced?

STEP_VALUE = re.compile(r"<<.*=\s*(-?[\d.,]+)>>")


def step_values(record):
    """The intermediate results of a record's steps, as strings ("<<10-1=9>>" -> "9")."""
    values = []
    for step in record["steps"]:
        m = STEP_VALUE.fullmatch(step.strip())
        if not m:
            raise SystemExit(f"--analyze=values needs steps of the form <<expression=value>>, not {step!r}")
        values.append(m[1].replace(",", ""))
    return values


def print_values(model, vocab, records, cfg, K, max_new_tokens, batch_size):
    results = run(model, vocab, records, cfg, K, max_new_tokens, batch_size, top_k=5)
    c = cfg["c_thought"]
    hits, said_most = {}, {}  # thought -> [top-1 hits, top-5 hits, questions with that step]
    for record, r in zip(records, results):
        values = step_values(record)
        for j, top in enumerate(r["thoughts"]):
            step = j // c  # thoughts j*c .. j*c + c - 1 replaced step j (0-based)
            if step >= len(values):
                continue
            said = [t.strip() for t, _ in top]
            said_most.setdefault(j + 1, Counter())[repr(top[0][0])] += 1
            h = hits.setdefault(j + 1, [0, 0, 0])
            h[0] += said[0] == values[step]
            h[1] += values[step] in said
            h[2] += 1
    correct, judged, _ = accuracy(results)
    print(f"{len(records)} questions, {K} thoughts, accuracy {correct / max(judged, 1):.3f}; each thought "
          "decoded through the LM head, against the result of the step it replaced")
    print(f"{'thought':>7}  {'step':>4}  {'top-1':>6}  {'top-5':>6}  questions  its commonest top-1 tokens")
    for j, (t1, t5, n) in sorted(hits.items()):
        common = ", ".join(f"{t} {100 * k / n:.0f}%" for t, k in said_most[j].most_common(3))
        print(f"{j:>7}  {(j - 1) // c + 1:>4}  {100 * t1 / n:>5.1f}%  {100 * t5 / n:>5.1f}%  {n:>9}  {common}")


# -----------------------------------------------------------------------------

if __name__ == "__main__":
    globals().update(configure({k: globals()[k] for k in config_keys}, sys.argv[1:]))
    if analyze not in ("", "frontier", "mixing", "values"):
        raise SystemExit(f"analyze={analyze!r}: choose 'frontier' or 'mixing' (ProsQA), 'values' "
                         "(arithmetic), or leave it empty")
    if analyze and (question or plot):
        raise SystemExit("the analyses run on the test split; drop --question and --plot")
    if latent < -1:
        raise SystemExit(f"latent={latent} must be >= -1 (-1: as trained)")
    check_ranges(globals(), least=dict(batch_size=1, top_k=1, max_new_tokens=-1))
    if plot and not plot.endswith(".png"):
        raise SystemExit(f"plot={plot!r}: give a file name ending in .png")
    device, _, _ = common.setup_device(device, "float32")
    torch.manual_seed(seed)
    path = init_from
    if not path:
        empty = not any(os.path.isfile(os.path.join(out_dir, f)) for f in ("best.pt", "ckpt.pt"))
        if out_dir == "out" and empty and os.path.isdir(SHIPPED):  # a fresh clone: the shipped model
            path = os.path.relpath(SHIPPED)
            print(f"no checkpoint in out/: using the shipped model {path} "
                  "(train your own with python train.py config/prosqa_cpu.py)")
        else:
            path = common.find_checkpoint(out_dir)
    model, vocab, cfg = load(path, device)
    max_new_tokens = cfg.get("max_new_tokens", 96) if max_new_tokens <= 0 else max_new_tokens
    trained = trained_thoughts(cfg)
    if (analyze or plot) and trained == 0:
        raise SystemExit(f"{'--plot' if plot else 'the analyses'} show(s) thoughts; a {cfg['method']} model has none")
    if analyze in ("frontier", "mixing") and cfg["task"] != "prosqa":
        hint = (" (without --analyze, sample.py names the concepts each thought values most)"
                if cfg["task"] == "prontoqa" else "")
        raise SystemExit(f"--analyze={analyze} reads a ProsQA question's graph; this model was trained "
                         f"on {cfg['task']!r}{hint}")
    if plot and cfg["task"] != "prosqa":
        raise SystemExit(f"--plot draws a ProsQA question's graph; this model was trained on {cfg['task']!r}")
    print(f"{path}: {cfg['method']} on {cfg['task']}, trained with {trained} thought(s)")
    if latent > trained:
        print(f"warning: {latent} thoughts, more than the {trained} this model was trained with")
    if latent >= 0 and cfg["method"] in ("cot", "no_cot", "no_thoughts"):
        print(f"warning: a {cfg['method']} model has no thoughts; --latent is ignored")

    if question:
        records = [dict(question=question, steps=[], answer=None)]
        if cfg["task"] == "prosqa":  # its graph: node values, a picture, and the right answer
            try:
                g = tasks.parse_prosqa(question)
                sym = g["idx_to_symbol"]
                records = [dict(records[0], answer=f"{sym[g['root']]} is a {sym[g['target']]}.", **g)]
            except ValueError as e:
                if plot:
                    raise SystemExit(f"--plot needs the question's graph, and {e}")
        # a free question has no steps to count, so "as trained" means K*c thoughts
        latent = trained if latent < 0 else latent
    else:
        here = os.path.join(path if os.path.isdir(path) else os.path.dirname(path), f"{cfg['task']}_test.json")
        data_dir = cfg["data_dir"] or os.path.join("data", cfg["task"])
        test_path = here if os.path.isfile(here) else os.path.join(data_dir, f"{cfg['task']}_test.json")
        try:
            records = data.load_records(test_path)
        except (FileNotFoundError, ValueError) as e:
            raise SystemExit(str(e))
        # one question is too few for an analysis: the paper's test split has 500
        n = {"": num_samples, "frontier": 3, "mixing": 500, "values": 500}[analyze] if num_samples == 1 else num_samples
        records = pick(records, 1 if plot else n, seed)
        if plot and not has_graph(records[0]):
            raise SystemExit(f"--plot needs ProsQA records with their graph; {test_path} has none")
    K = trained if latent < 0 else latent

    try:
        if analyze == "frontier":
            print_frontier(model, vocab, records, cfg, K)
        elif analyze == "mixing":
            print_mixing(model, vocab, records, cfg, K, max_new_tokens, batch_size)
        elif analyze == "values":
            print_values(model, vocab, records, cfg, K, max_new_tokens, batch_size)
        else:
            results = run(model, vocab, records, cfg, latent, max_new_tokens, batch_size, top_k)
            examples = data.tokenize(records[:SHOW], vocab, questions_only=True)
            for i, (record, ex, r) in enumerate(zip(records, examples, results)):
                if has_graph(record):  # name the nodes each thought values most
                    sym = record["idx_to_symbol"]
                    r["values"] = [{sym[v]: p for v, p in d.items()}
                                   for d in node_values(model, vocab, record, ex, r["n_thoughts"], cfg)]
                elif cfg["task"] == "prontoqa":  # the concepts it values most
                    r["values"] = concept_values(model, vocab, record, ex, r["n_thoughts"], cfg)
                print_result(i + 1, r, top_k)
            if len(results) > SHOW:
                print(f"... and {len(results) - SHOW} more, not shown")
            correct, judged, mean_tokens = accuracy(results)
            if len(results) > 1 and judged:
                print(f"accuracy {correct / judged:.3f} ({correct}/{judged}), "
                      f"mean generated tokens {mean_tokens:.1f} (thoughts included)")
                for n_steps, (c, j) in sorted(by_steps(records, results).items()):
                    print(f"  {n_steps}-step questions: {c / j:.3f} ({c}/{j})")
            if plot:
                print(f"wrote {draw(model, vocab, records[0], results[0], cfg, plot)}")
    except ValueError as e:  # unknown words for a task vocabulary, a question that does not fit
        raise SystemExit(f"error: {e}")
