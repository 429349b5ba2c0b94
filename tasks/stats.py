"""
Statistics of a data file, to compare a generator (or any file) with the released data:
`python -m tasks stats FILE` prints them (docs/data.md has the official figures).
"""
from data import encode


def summarize(xs):
    xs, n = sorted(xs), len(xs)
    mean = sum(xs) / n
    pct = lambda q: xs[min(n - 1, int(q / 100 * n))]
    return {"mean": mean, "sd": (sum((x - mean) ** 2 for x in xs) / n) ** 0.5,
            "min": xs[0], "max": xs[-1], "p5": pct(5), "p50": pct(50), "p95": pct(95)}


def shares(xs, top=None):
    """{value: percent of xs}; values above top are counted as top."""
    xs = [min(x, top) for x in xs] if top else xs
    return {v: 100 * xs.count(v) / len(xs) for v in sorted(set(xs))}


def lengths(records):
    """Steps per record, and lengths in GPT-2 tokens as the model sees them: question\\n,
    step\\n..., "### answer", <|endoftext|>."""
    q = [len(encode(r["question"] + "\n")) for r in records]
    st = [sum(len(encode(x + "\n")) for x in r["steps"]) for r in records]
    full = [nq + ns + len(encode("### " + r["answer"])) + 1 for nq, ns, r in zip(q, st, records)]
    return {"examples": len(records), "steps": shares([len(r["steps"]) for r in records]),
            "question_tokens": summarize(q), "steps_tokens": summarize(st), "full_tokens": summarize(full)}


def format_stats(s):
    """The rows of a dataset_stats dict (ProsQA's graph rows where the records had a graph)."""
    pcts = lambda d, top=None: " / ".join(f"{k}{'+' * (k == top)}: {v:.1f}%" for k, v in d.items())
    lens = lambda x: f"{x['mean']:.0f} / {x['p95']} / {x['max']}"
    rows = [("examples", f"{s['examples']}")]
    if "nodes" in s:
        n, e = s["nodes"], s["edges"]
        rows += [("nodes, mean [range]", f"{n['mean']:.1f} [{n['min']}-{n['max']}], sd {n['sd']:.1f}"),
                 ("edges, mean", f"{e['mean']:.1f}, sd {e['sd']:.1f}, "
                                 f"p5/p50/p95 {e['p5']}/{e['p50']}/{e['p95']}")]
    rows.append(("steps", pcts(s["steps"])))
    if "nodes" in s:
        rows += [("names per example", f"{s['names']['mean']:.2f} ({pcts(s['names_share'])})"),
                 ("shortest root->target paths, mean", f"{s['paths']['mean']:.2f}"),
                 ("out-degree", pcts(s["out_degree"], top=5)),
                 ("correct option listed first", f"{s['correct_first']:.1f}%")]
    rows += [('question + "\\n", tokens mean/p95/max', lens(s["question_tokens"])),
             ("steps, tokens mean", f"{s['steps_tokens']['mean']:.0f}"),
             ("full sequence, tokens mean/p95/max", lens(s["full_tokens"]))]
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}} | {v}" for k, v in rows)
