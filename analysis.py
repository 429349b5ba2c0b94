"""
What a trained model's continuous thoughts hold: the paper's Section 5 analyses, read by
sample.py (--analyze=..., --plot=..., and the names each thought is shown with).

- A thought is never decoded. Its *value* for a candidate is the probability that the
  language after it names that candidate next, teacher-forced (name_values): for ProsQA the
  node after "Every", for ProntoQA the concept after "Fae is a".
- frontier: after k thoughts, the values of the nodes k steps from the root (the paper's
  Figure: several candidates kept alive, a breadth-first search in latent space).
- mixing: k thoughts, then <eot> and language: is the path correct, longer, hallucinated?
- values: arithmetic; does thought k, read through the LM head, say step k's result?

    python sample.py --analyze=frontier        # or mixing; values for arithmetic models
"""
import re
from collections import Counter

import torch
import torch.nn.functional as F

import coconut
import data
import scoring
from tasks import prontoqa, prosqa

CATEGORIES = ("correct path", "longer path", "hallucination", "wrong target",
              "correct label", "incorrect label")
SHOW = 5  # questions printed in full


def check(analyze, plot, question, cfg, trained):
    """Refuse, in one line, an analysis or picture that this model or request cannot give."""
    if analyze not in ("", "frontier", "mixing", "values"):
        raise SystemExit(f"analyze={analyze!r}: choose 'frontier' or 'mixing' (ProsQA), 'values' "
                         "(arithmetic), or leave it empty")
    if analyze and (question or plot):
        raise SystemExit("the analyses run on the test split; drop --question and --plot")
    if (analyze or plot) and trained == 0:
        raise SystemExit(f"{'--plot' if plot else 'the analyses'} show(s) thoughts; a {cfg['method']} model has none")
    if analyze in ("frontier", "mixing") and cfg["task"] != "prosqa":
        hint = (" (without --analyze, sample.py names the concepts each thought values most)"
                if cfg["task"] == "prontoqa" else "")
        raise SystemExit(f"--analyze={analyze} reads a ProsQA question's graph; this model was trained "
                         f"on {cfg['task']!r}{hint}")
    if plot and cfg["task"] != "prosqa":
        raise SystemExit(f"--plot draws a ProsQA question's graph; this model was trained on {cfg['task']!r}")


def short(text, n=40):
    return text if len(text) <= 2 * n + 5 else text[:n] + " ... " + text[-n:]


@torch.no_grad()
def name_values(model, vocab, ex, k, cfg, head, names):
    """After k thoughts, teacher-force the text `head` and score each of `names` by the
    probability of its tokens (their product; no renormalisation). One batched forward."""
    ids, _, at = data.prompt(ex, vocab, cfg, n_latent=k)  # ends with <eot>
    head = ids + vocab.encode(head)  # a step right after <eot> has no leading space
    rows = []
    for name in names:
        name = vocab.encode(name)
        rows.append(data.Row(head + name, [-100] * len(head) + name, at))  # labels mark the name tokens
    batch = data.collate(rows, vocab, next(model.parameters()).device)  # <latent> -> continuous
    h = coconut.latent_forward(model, batch)  # (B, T, C)
    logp = F.log_softmax(model.logits(h[:, :-1]).float(), -1)  # (B, T-1, V) predicts t+1
    y = batch["labels"][:, 1:]
    lp = logp.gather(-1, y.clamp(min=0)[..., None])[..., 0]  # (B, T-1)
    return (lp * (y != -100)).sum(1).exp().tolist()  # product of the name's probabilities


def thought_values(model, vocab, record, ex, n_latent, cfg):
    """[{name: value} after 1..n_latent thoughts]: ProsQA's nodes (when the record has its graph) or
    ProntoQA's concepts; None for other tasks (sample.py then shows the decoded tokens)."""
    if has_graph(record):
        sym = record["idx_to_symbol"]
        return [{sym[v]: p for v, p in d.items()} for d in node_values(model, vocab, record, ex, n_latent, cfg)]
    if cfg["task"] == "prontoqa":
        return concept_values(model, vocab, record, ex, n_latent, cfg)
    return None


# -----------------------------------------------------------------------------
# ProsQA. A record carries its graph: idx_to_symbol, edges [parent, child], root, target.

def graph(record):
    return prosqa.adjacency(len(record["idx_to_symbol"]), record["edges"])


def has_graph(record):
    return {"edges", "idx_to_symbol", "root", "target"} <= record.keys()


def check_graph(records):
    if not all(has_graph(r) for r in records):
        raise SystemExit("the analyses need ProsQA records with their graph (edges, "
                         "idx_to_symbol, root, target), as tasks/prosqa.py generates them")


def node_values(model, vocab, record, ex, n_latent, cfg):
    """[{node: value} after 1, 2, ..., n_latent thoughts] over every concept node (a person's name
    never follows "Every")."""
    _, parents = graph(record)
    nodes = [v for v in range(len(record["idx_to_symbol"])) if parents[v]]
    names = [" " + record["idx_to_symbol"][v] for v in nodes]
    return [dict(zip(nodes, name_values(model, vocab, ex, k, cfg, "Every", names))) for k in range(1, n_latent + 1)]


def frontier_values(model, vocab, record, ex, k, cfg):
    """The values after k thoughts of the nodes at distance k/c from the root (the frontier
    that the next language step would name).

    Returns [(node, value, reaches_target, height)] sorted by value, height being the distance
    to the nearest leaf.
    """
    children, _ = graph(record)
    dist = prosqa.bfs(children, record["root"])
    nodes = [v for v, d in dist.items() if d == k // cfg["c_thought"]]  # step k/c names them
    if not nodes:  # the graph is shallower than k steps
        return []
    values = name_values(model, vocab, ex, k, cfg, "Every", [" " + record["idx_to_symbol"][v] for v in nodes])
    out = []
    for v, value in zip(nodes, values):
        reach = prosqa.bfs(children, v)
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
    correct = scoring.answer_of(text) == scoring.answer_of(record["answer"])
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
    dist = prosqa.bfs(graph(record)[0], record["root"])
    if path[0] not in dist:
        return "hallucination"
    if path[-1] != record["target"] or not correct:
        return "wrong target"
    shortest = dist[path[0]] + len(path) - 1 == dist[record["target"]]
    return "correct path" if shortest else "longer path"


def draw(model, vocab, record, result, cfg, path):
    """The latent search of one question, written to path (a PNG)."""
    import plot  # matplotlib is needed only here
    ex = data.tokenize([record], vocab, questions_only=True)[0]
    values = node_values(model, vocab, record, ex, result["n_latent"], cfg)
    verdict = "" if result["correct"] is None else " (right)" if result["correct"] else " (wrong)"
    query = record["question"][record["question"].rindex(" Is ") + 1:]
    title = f"{query}   The model answers \"{result['answer']}\"{verdict}"
    fig = plot.latent_search(record, values, title)
    fig.savefig(path, dpi=plot.DPI)
    return path


def print_frontier(model, vocab, records, cfg, n_latent):
    check_graph(records)
    examples = data.tokenize(records, vocab, questions_only=True)  # answers may hold unknown words
    ks = range(cfg["c_thought"], n_latent + 1, cfg["c_thought"])  # one step per c thoughts
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


def print_mixing(records, results_by_k):
    """The outputs after k thoughts then language ({k: sample.run's results}), by category."""
    check_graph(records)
    print(f"{len(records)} questions; k thoughts, then <eot> and language (shares in %)")
    print(f"{'k':>2}  " + "  ".join(f"{c:>15}" for c in CATEGORIES) + "  accuracy")
    for k, results in results_by_k.items():
        kinds = [classify(rec, r["text"]) for rec, r in zip(records, results)]
        accuracy = sum(r["correct"] for r in results) / len(results)
        print(f"{k:>2}  " + "  ".join(f"{100 * kinds.count(c) / len(kinds):>15.1f}" for c in CATEGORIES)
              + f"  {100 * accuracy:>8.1f}")


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


def concept_values(model, vocab, record, ex, n_latent, cfg):
    """[{concept: value} after 1, 2, ..., n_latent thoughts] over the question's concepts."""
    entity, concepts = pronto_concepts(record["question"])
    names = [" " + prontoqa.with_article(c) for c in concepts]
    return [dict(zip(concepts, name_values(model, vocab, ex, k, cfg, f"{entity} is", names)))
            for k in range(1, n_latent + 1)]


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


def print_values(records, results, c_thought):
    """How often each thought's top-1 and top-5 tokens (sample.run's results, top_k=5) hold
    the result of the step it replaced (thoughts j*c .. j*c + c - 1 replaced step j)."""
    hits, said_most = {}, {}  # thought -> [top-1 hits, top-5 hits, questions with that step]
    for record, r in zip(records, results):
        values = step_values(record)
        for j, top in enumerate(r["thoughts"]):
            step = j // c_thought
            if step >= len(values):
                continue
            said = [t.strip() for t, _ in top]
            said_most.setdefault(j + 1, Counter())[repr(top[0][0])] += 1
            h = hits.setdefault(j + 1, [0, 0, 0])
            h[0] += said[0] == values[step]
            h[1] += values[step] in said
            h[2] += 1
    accuracy = sum(r["correct"] for r in results) / max(len(results), 1)
    print(f"{len(records)} questions, {max(r['n_latent'] for r in results)} thoughts, accuracy {accuracy:.3f}; "
          "each thought decoded through the LM head, against the result of the step it replaced")
    print(f"{'thought':>7}  {'step':>4}  {'top-1':>6}  {'top-5':>6}  questions  its commonest top-1 tokens")
    for j, (t1, t5, n) in sorted(hits.items()):
        commonest = ", ".join(f"{t} {100 * k / n:.0f}%" for t, k in said_most[j].most_common(3))
        print(f"{j:>7}  {(j - 1) // c_thought + 1:>4}  {100 * t1 / n:>5.1f}%  {100 * t5 / n:>5.1f}%  {n:>9}  {commonest}")
