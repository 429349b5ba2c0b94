"""
Data for Coconut: the GPT-2 tokenizer, the ProsQA and ProntoQA generators, a loader for the
official {question, steps, answer} JSON files, the stage-k curriculum layout and the collator.

    python data.py prosqa                      # writes data/prosqa/prosqa_{train,valid,test}.json
    python data.py prontoqa --n_train=1000     # writes data/prontoqa/...
    python data.py stats data/prosqa/prosqa_valid.json
"""
import json
import math
import os
import random
import tempfile
import time
import tiktoken
import torch
from tiktoken.load import data_gym_to_mergeable_bpe_ranks

# -----------------------------------------------------------------------------
# Tokenizer: GPT-2 BPE from the original files shipped in gpt2/, so it never touches the network.
# Coconut's markers and a pause token take the ids right after <|endoftext|>.

EOS, BOT, EOT, LATENT, PAUSE = 50256, 50257, 50258, 50259, 50260
SPECIAL_TOKENS = {"<|endoftext|>": EOS, "<|start-latent|>": BOT, "<|end-latent|>": EOT,
                  "<|latent|>": LATENT, "<|pause|>": PAUSE}
GPT2_VOCAB_SIZE = 50304  # 50261 ids padded up to a multiple of 64 (faster matmuls)

_enc = None

def tokenizer():
    global _enc
    if _enc is None:
        here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpt2")
        ranks = data_gym_to_mergeable_bpe_ranks(
            os.path.join(here, "vocab.bpe"), os.path.join(here, "encoder.json"),
            vocab_bpe_hash="1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
            encoder_json_hash="196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783")
        gpt2_pat = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
        _enc = tiktoken.Encoding("gpt2-coconut", pat_str=gpt2_pat, mergeable_ranks=ranks,
                                 special_tokens=SPECIAL_TOKENS)
    return _enc

def encode(text):
    """Plain text to GPT-2 ids; text that looks like a special token stays plain text."""
    return tokenizer().encode_ordinary(text)

def decode(ids):
    return tokenizer().decode(list(ids))

# -----------------------------------------------------------------------------
# ProsQA: "Is Tom a lempus or scrompus?" over a random DAG of "is a" statements.
# The paper's Algorithm 1 taken literally gives ~5 names per example; the probabilities below were
# fitted to the 800 released examples and reproduce their statistics (see README).

NAMES = ["Tom", "Bob", "Max", "Gabriel", "Oliver", "Polly", "Alex", "Jack", "Carol", "Sam",
         "Stella", "Sally", "Eva", "Fae", "Rex", "Davis", "Wren"]
CONCEPTS = ["wumpus", "yumpus", "zumpus", "dumpus", "rompus", "numpus", "tumpus", "vumpus",
            "impus", "jompus", "gorpus", "shumpus", "lempus", "sterpus", "grimpus", "lorpus",
            "brimpus", "timpus", "yimpus", "rempus", "fompus", "worpus", "terpus", "gerpus",
            "kerpus", "scrompus", "zhorpus", "bompus", "jelpus", "felpus", "chorpus", "hilpus",
            "storpus", "yerpus", "boompus", "gwompus", "rorpus", "quimpus"]
MAX_REJECTS = 1000  # consecutive rejected graphs before we call the knobs impossible

def poisson(rng, lam):
    # Knuth's method: exact, and draws only from our own rng (no numpy, no global state)
    k, p, limit = 0, rng.random(), math.exp(-lam)
    while p > limit:
        k, p = k + 1, p * rng.random()
    return k

def weighted_sample(rng, items, weights, k):
    # k distinct items, each draw proportional to the remaining weights (numpy's replace=False)
    items, weights, out = list(items), list(weights), []
    for _ in range(k):
        i = rng.choices(range(len(items)), weights)[0]
        out.append(items.pop(i))
        weights.pop(i)
    return out

def bfs(children, src):
    """Shortest distance from src to every node it reaches: {node: hops}."""
    dist, frontier = {src: 0}, [src]
    while frontier:
        nxt = []
        for u in frontier:
            for v in children[u]:
                if v not in dist:
                    dist[v] = dist[u] + 1
                    nxt.append(v)
        frontier = nxt
    return dist

def adjacency(n, edges):
    children, parents = [[] for _ in range(n)], [[] for _ in range(n)]
    for p, c in edges:
        children[p].append(c)
        parents[c].append(p)
    return children, parents

def count_shortest_paths(parents, dist):
    """{node: number of shortest paths from the BFS source}, filled in BFS order."""
    count = {}
    for v in sorted(dist, key=dist.get):
        count[v] = sum(count[u] for u in parents[v] if dist.get(u) == dist[v] - 1) or 1
    return count

def random_shortest_path(rng, parents, dist, target):
    """A uniformly random shortest path to target: walk back, picking each predecessor in
    proportion to the number of shortest paths that reach it."""
    count, path = count_shortest_paths(parents, dist), [target]
    while dist[path[-1]] > 0:
        preds = [u for u in parents[path[-1]] if dist.get(u) == dist[path[-1]] - 1]
        path.append(rng.choices(preds, [count[u] for u in preds])[0])
    return path[::-1]

def prosqa_graph(rng, n_nodes):
    """One random DAG: edges (parent, child) over node ids 0..n_nodes-1, and each node's label.
    Seeds 0 and 1 become the two candidate root names; label bit 1 (2) = reachable from seed 0 (1)."""
    label, depth, edges = [1, 2], [0, 0], []
    only = {1: [0], 2: [1]}  # nodes reachable from exactly one seed: where most parents come from
    for idx in range(2, n_nodes):
        k, u = poisson(rng, 1.5), rng.random()
        cands = only[1] if u <= 0.40 else only[2] if u <= 0.80 else range(idx)
        # deeper parents are favoured, which is what makes multi-hop chains common
        k = min(k, len(cands))
        parents = weighted_sample(rng, cands, [1 + 1.5 * depth[c] for c in cands], k) if k else []
        lab = 0
        for p in parents:
            lab |= label[p]
        seeded = [depth[p] for p in parents if label[p]]
        depth.append(1 + min(seeded) if seeded else 0)
        label.append(lab)
        if lab in only:
            only[lab].append(idx)
        edges += [(p, idx) for p in parents]
    return edges, label

def prosqa_example(rng, n_nodes=28, min_hops=3, max_hops=6):
    """One ProsQA record in the official format; rejects graphs until one fits the hop range."""
    if n_nodes < 4:
        raise ValueError(f"n_nodes={n_nodes}: need at least 4 nodes (two names and a leaf each)")
    if n_nodes > 2 + len(CONCEPTS):
        raise ValueError(f"n_nodes={n_nodes}: at most {2 + len(CONCEPTS)}, there are only "
                         f"{len(CONCEPTS)} concepts to name the nodes with")
    if not 1 <= min_hops <= max_hops:
        raise ValueError(f"min_hops={min_hops}, max_hops={max_hops}: need 1 <= min_hops <= max_hops")
    for _ in range(MAX_REJECTS):
        edges, label = prosqa_graph(rng, n_nodes)
        # drop nodes without edges and renumber in order (seeds stay 0 and 1 if they survive)
        used = sorted({v for e in edges for v in e})
        if used[:2] != [0, 1]:
            continue
        new = {v: i for i, v in enumerate(used)}
        edges, label, N = [(new[p], new[c]) for p, c in edges], [label[v] for v in used], len(used)
        children, parents = adjacency(N, edges)
        # exclusive leaves of each seed: the target must not be reachable from the other name
        dist = [bfs(children, 0), bfs(children, 1)]
        leaves = [[v for v in range(N) if not children[v] and label[v] == s + 1] for s in (0, 1)]
        if not leaves[0] or not leaves[1]:
            continue
        deepest = [max(dist[s][v] for v in leaves[s]) for s in (0, 1)]
        root = rng.randrange(2) if deepest[0] == deepest[1] else int(deepest[1] > deepest[0])
        if not min_hops <= deepest[root] <= max_hops:
            continue
        target = rng.choice([v for v in leaves[root] if dist[root][v] == deepest[root]])
        neg_target = rng.choice(leaves[1 - root])
        nameless = [v for v in range(N) if not parents[v]]
        if len(nameless) > len(NAMES):
            continue
        # parentless nodes are people, everything else a concept; no symbol repeats
        names = iter(rng.sample(NAMES, len(nameless)))
        concepts = iter(rng.sample(CONCEPTS, N - len(nameless)))
        sym = [next(concepts) if parents[v] else next(names) for v in range(N)]
        say = lambda p, c: (f"Every {sym[p]}" if parents[p] else sym[p]) + f" is a {sym[c]}."
        statements = [say(p, c) for p, c in edges]
        rng.shuffle(statements)
        options = [sym[target], sym[neg_target]]
        rng.shuffle(options)
        path = random_shortest_path(rng, parents, dist[root], target)
        return {"question": " ".join(statements) + f" Is {sym[root]} a {options[0]} or {options[1]}?",
                "answer": f"{sym[root]} is a {sym[target]}.",
                "steps": [say(p, c) for p, c in zip(path, path[1:])],
                "idx_to_symbol": sym, "edges": [list(e) for e in edges],
                "root": root, "target": target, "neg_target": neg_target}
    raise ValueError(f"{MAX_REJECTS} graphs in a row were rejected with n_nodes={n_nodes}, "
                     f"min_hops={min_hops}, max_hops={max_hops}: raise n_nodes or lower min_hops")

def generate_prosqa(n, seed=0, n_nodes=28, min_hops=3, max_hops=6, rng=None):
    """n ProsQA records; the same seed gives the same records (pass rng to continue a stream)."""
    rng = random.Random(seed) if rng is None else rng
    return [prosqa_example(rng, n_nodes, min_hops, max_hops) for _ in range(n)]

# -----------------------------------------------------------------------------
# ProntoQA, 5 hops over a fictional ontology, converted the way the Coconut paper does:
# question = rules + facts + query, 6 steps of "fact. rule." pairs, answer "True" or "False".

PRONTO_ENTITIES = ["Fae", "Rex", "Sally", "Max", "Alex", "Sam", "Polly", "Stella", "Wren"]
PRONTO_CONCEPTS = CONCEPTS[:17]
PROPERTY_FAMILIES = [
    ["blue", "red", "brown", "orange"], ["small", "large"],
    ["metallic", "wooden", "luminous", "liquid"], ["transparent", "opaque"],
    ["nervous", "happy", "feisty", "shy"], ["bright", "dull"], ["sweet", "sour", "spicy", "bitter"],
    ["floral", "fruity", "earthy"], ["hot", "cold", "temperate"],
    ["kind", "mean", "angry", "amenable", "aggressive"], ["melodic", "muffled", "discordant", "loud"],
    ["slow", "moderate", "fast"], ["windy", "sunny", "overcast", "rainy", "snowy"]]

def with_article(word):
    return ("an " if word[0] in "aeiou" else "a ") + word

def pronto_rule(rng, x, y, prop=False, neg=False):
    """'x is a y' (prop=False) or 'x is (not) y' for a property, in one of ProntoQA's templates."""
    nt = "not " if neg else ""
    if rng.random() < 0.5:
        return f"{x.capitalize()}es are {nt}{y if prop else y + 'es'}."
    return f"{rng.choice(['Every', 'Each'])} {x} is {nt}{y if prop else with_article(y)}."

def prontoqa_example(rng):
    """One record: E is a c5, c5 is a c4, ..., c1 is a root, each c_i also is an extra d_i; the query
    asks about c1's property, and distractors (a tree b -> a, D with the opposite property) mislead."""
    c = rng.sample(PRONTO_CONCEPTS, 14)
    root, chain, extra, (a, b), D = c[0], c[1:6], c[6:11], c[11:13], c[13]  # chain = c1..c5
    E = rng.choice(PRONTO_ENTITIES)
    props = [rng.choice(f) for f in rng.sample(PROPERTY_FAMILIES, 11)]  # c1..c5, d1..d5, b
    # negation rates measured on the released data: c1 (the one asked about) is negated most
    negs = ([rng.random() < 0.4715] + [rng.random() < 0.2766 for _ in range(4)]
            + [rng.random() < 1 / 3 for _ in range(6)])
    links = [pronto_rule(rng, x, y) for x, y in zip(chain, [root] + chain[:4])]  # c_i is a c_i-1
    prop_rules = [pronto_rule(rng, x, p, True, n) for x, p, n in zip(chain + extra + [b], props, negs)]
    rules = (links + prop_rules + [pronto_rule(rng, x, y) for x, y in zip(chain, extra)]
             + [pronto_rule(rng, b, a), pronto_rule(rng, D, props[0], True, not negs[0])])
    # the chain of thought reuses the exact rule strings: c5 -> c4 -> ... -> c1 -> c1's property
    used = links[1:][::-1] + [prop_rules[0]]
    steps = [f"{E} is {with_article(x)}. {rule}" for x, rule in zip(chain[::-1], used)]
    conclusion = "not " if negs[0] else ""
    steps.append(f"{E} is {conclusion}{props[0]}.")
    rng.shuffle(rules)
    facts = [f"{E} is {with_article(chain[4])}.", f"{E} is {with_article(b)}."]
    rng.shuffle(facts)
    true = rng.random() < 0.5
    query = conclusion if true else ("" if negs[0] else "not ")
    question = " ".join(rules + facts) + f" True or false: {E} is {query}{props[0]}."
    return {"question": question, "steps": steps, "answer": "True" if true else "False"}

def generate_prontoqa(n, seed=0, rng=None):
    rng = random.Random(seed) if rng is None else rng
    return [prontoqa_example(rng) for _ in range(n)]

# -----------------------------------------------------------------------------
# Splits and the loader for any file in the official format

SPLIT_SIZES = {"prosqa": (17886, 300, 500), "prontoqa": (9000, 200, 800)}  # the paper's
EXAMPLE_FNS = {"prosqa": prosqa_example, "prontoqa": prontoqa_example}

def make_splits(task, n_train, n_valid, n_test, seed=0, **knobs):
    """(train, valid, test) from one rng; a repeated question is skipped, so no split leaks."""
    if task not in EXAMPLE_FNS:
        raise ValueError(f"unknown task {task!r}, expected one of {sorted(EXAMPLE_FNS)}")
    rng, seen, records, repeats = random.Random(seed), set(), [], 0
    while len(records) < n_train + n_valid + n_test:
        r = EXAMPLE_FNS[task](rng, **knobs)
        if r["question"] in seen:
            repeats += 1
            if repeats >= MAX_REJECTS:  # the knobs allow too few distinct questions
                raise ValueError(f"{task} {knobs}: only {len(records)} distinct questions found; "
                                 "ask for fewer examples or make the graphs larger")
            continue
        seen.add(r["question"])
        records.append(r)
        repeats = 0
    return records[:n_train], records[n_train:n_train + n_valid], records[n_train + n_valid:]

def write_splits(task, out_dir, n_train=None, n_valid=None, n_test=None, seed=0, **knobs):
    """Write out_dir/{task}_{train,valid,test}.json; returns the three paths."""
    if task not in SPLIT_SIZES:
        raise ValueError(f"unknown task {task!r}, expected one of {sorted(SPLIT_SIZES)}")
    sizes = [d if n is None else n for n, d in zip((n_train, n_valid, n_test), SPLIT_SIZES[task])]
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name, records in zip(("train", "valid", "test"), make_splits(task, *sizes, seed=seed, **knobs)):
        path = os.path.join(out_dir, f"{task}_{name}.json")
        # write next to the target, then rename: a reader never sees a half-written file
        fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(records, f)
        os.replace(tmp, path)
        paths.append(path)
    return paths


def ensure_splits(task, out_dir, n_train=None, seed=0, **knobs):
    """Generate a task's splits into out_dir on first use; refuse data made with other knobs."""
    paths = [os.path.join(out_dir, f"{task}_{split}.json") for split in ("train", "valid", "test")]
    meta_path = os.path.join(out_dir, "meta.json")
    meta = dict(task=task, n_train=n_train, seed=seed, **knobs)
    if all(os.path.exists(p) for p in paths):
        if os.path.exists(meta_path):
            with open(meta_path) as f:
                old = json.load(f)
            if old != meta:
                raise SystemExit(f"{out_dir} holds data generated with {old}, not {meta}: "
                                 "delete it or point data_dir to another folder")
        return paths
    if task not in SPLIT_SIZES:
        hint = (" GSM8k-Aug is not generated here: convert it with the official Coconut "
                "repository's preprocessing script and rename gsm_{train,valid,test}.json to "
                "gsm8k_{train,valid,test}.json." if task == "gsm8k" else "")
        raise SystemExit(f"no data for task {task!r}: put {', '.join(paths)} in place (JSON lists "
                         f"of {{question, steps, answer}}).{hint}")
    print(f"generating {task} data into {out_dir} ({meta})")
    write_splits(task, out_dir, n_train=n_train, seed=seed, **knobs)
    with open(meta_path + ".tmp", "w") as f:  # written last: the splits are complete
        json.dump(meta, f)
    os.replace(meta_path + ".tmp", meta_path)  # atomic, so runs started together may race
    return paths


def load_records(path):
    """A JSON list of {question: str, steps: [str], answer: str} objects (extra fields kept)."""
    fmt = "expected a JSON list of {question, steps, answer} objects (the official Coconut format)"
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file; generate one with `python data.py prosqa` "
                                "(or prontoqa) or pass the path to an official data file")
    with open(path) as f:
        text = f.read()
    if not text.strip():
        raise ValueError(f"{path}: the file is empty; {fmt}")
    try:
        records = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON at line {e.lineno} col {e.colno}: {e.msg}") from None
    if not isinstance(records, list):
        raise ValueError(f"{path}: top level is a JSON {type(records).__name__}; {fmt}")
    if not records:
        raise ValueError(f"{path}: the list is empty; {fmt}")
    for i, r in enumerate(records):
        where = f"{path}: record {i}"
        if not isinstance(r, dict):
            raise ValueError(f"{where} is a {type(r).__name__}; {fmt}")
        for field, kind in (("question", str), ("steps", list), ("answer", str)):
            if field not in r:
                raise ValueError(f"{where} has no field '{field}'; {fmt}")
            if not isinstance(r[field], kind):
                raise ValueError(f"{where}: field '{field}' must be a {kind.__name__}, "
                                 f"got {type(r[field]).__name__}")
        bad = [j for j, s in enumerate(r["steps"]) if not isinstance(s, str)]
        if bad:
            raise ValueError(f"{where}: field 'steps' must be a list of strings, "
                             f"steps[{bad[0]}] is a {type(r['steps'][bad[0]]).__name__}")
    return records

# -----------------------------------------------------------------------------
# Statistics, to check a generator (or any file) against the released data

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

def dataset_stats(records):
    """The statistics of prosqa.md's table (graph ones only when records carry the graph)."""
    s = {"examples": len(records), "steps": shares([len(r["steps"]) for r in records])}
    if all("edges" in r and "idx_to_symbol" in r for r in records):
        names, paths, outdeg, first = [], [], [], []
        for r in records:
            children, parents = adjacency(len(r["idx_to_symbol"]), r["edges"])
            names.append(sum(not ps for ps in parents))
            outdeg += [len(ch) for ch in children]
            paths.append(count_shortest_paths(parents, bfs(children, r["root"])).get(r["target"], 0))
            options = r["question"].rsplit(" or ", 1)[0]  # "... Is Tom a X" where X is listed first
            first.append(options.endswith(" " + r["idx_to_symbol"][r["target"]]))
        s["nodes"] = summarize([len(r["idx_to_symbol"]) for r in records])
        s["edges"] = summarize([len(r["edges"]) for r in records])
        s["names"], s["names_share"] = summarize(names), shares(names)
        s["paths"], s["out_degree"] = summarize(paths), shares(outdeg, top=5)
        s["correct_first"] = 100 * sum(first) / len(first)
    # lengths as the model sees them: question\n, step\n..., "### answer", <|endoftext|>
    q = [len(encode(r["question"] + "\n")) for r in records]
    st = [sum(len(encode(x + "\n")) for x in r["steps"]) for r in records]
    full = [nq + ns + len(encode("### " + r["answer"])) + 1 for nq, ns, r in zip(q, st, records)]
    s["question_tokens"], s["steps_tokens"] = summarize(q), summarize(st)
    s["full_tokens"] = summarize(full)
    return s

def format_stats(s):
    pcts = lambda d, top=None: " / ".join(f"{k}{'+' * (k == top)}: {v:.1f}%" for k, v in d.items())
    lengths = lambda x: f"{x['mean']:.0f} / {x['p95']} / {x['max']}"
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
    rows += [('question + "\\n", tokens mean/p95/max', lengths(s["question_tokens"])),
             ("steps, tokens mean", f"{s['steps_tokens']['mean']:.0f}"),
             ("full sequence, tokens mean/p95/max", lengths(s["full_tokens"]))]
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}} | {v}" for k, v in rows)

def print_stats(path):
    print(path)
    print(format_stats(dataset_stats(load_records(path))))

# -----------------------------------------------------------------------------
# Task vocabulary: a model trained from scratch on ProsQA needs ~100 of GPT-2's 50,257 ids.
# Text still goes through GPT-2's BPE; the vocabulary maps GPT-2 ids to model ids and back.

class Vocab:
    """Model ids <-> GPT-2 ids: 'gpt2' is the identity over GPT-2's table, a task vocabulary
    keeps only the GPT-2 ids (and special tokens) that a training split uses."""

    def __init__(self, gpt2_ids=None):
        self.gpt2_ids = None if gpt2_ids is None else sorted(set(gpt2_ids) | set(SPECIAL_TOKENS.values()))
        self.index = None if gpt2_ids is None else {g: i for i, g in enumerate(self.gpt2_ids)}
        n = GPT2_VOCAB_SIZE if gpt2_ids is None else len(self.gpt2_ids)
        self.size = -(-n // 64) * 64  # embedding rows, padded to a multiple of 64
        self.eos, self.bot, self.eot, self.latent, self.pause = (
            self.id(t) for t in (EOS, BOT, EOT, LATENT, PAUSE))

    @classmethod
    def from_records(cls, records):
        ids = set()
        for r in records:
            for text in [r["question"] + "\n", "### " + r["answer"], *(s + "\n" for s in r["steps"])]:
                ids.update(encode(text))
        return cls(ids)

    def id(self, gpt2_id):
        return gpt2_id if self.index is None else self.index[gpt2_id]

    def encode(self, text):
        ids = encode(text)
        if self.index is None:
            return ids
        unknown = [i for i, t in enumerate(ids) if t not in self.index]
        if unknown:
            _, offsets = tokenizer().decode_with_offsets(ids)
            words = []  # the whole words around the unknown tokens, for the message
            for i in unknown:
                lo = offsets[i]
                while lo < len(text) - 1 and text[lo].isspace():
                    lo += 1  # a token such as " zebra" starts at its space
                hi = lo
                while lo > 0 and not text[lo - 1].isspace():
                    lo -= 1
                while hi < len(text) and not text[hi].isspace():
                    hi += 1
                words.append(text[lo:hi].strip(".,;:!?") or repr(decode([ids[i]])))
            words = sorted(set(words))
            raise ValueError(f"{', '.join(map(repr, words))} not in this model's task vocabulary "
                             f"({len(self.gpt2_ids)} GPT-2 tokens of its training data); "
                             "write the question with the training data's words")
        return [self.index[t] for t in ids]

    def decode(self, ids):
        return decode(ids if self.index is None else [self.gpt2_ids[i] for i in ids if i < len(self.gpt2_ids)])


def tokenize(records, vocab, questions_only=False):
    """Tokenize a dataset once; every stage's layout is then list work on these ids.
    questions_only keeps just the number of steps: enough for prompts, and an answer with a
    word outside a task vocabulary is then simply a wrong answer, not an error."""
    if questions_only:
        return [dict(question=vocab.encode(r["question"] + "\n"), steps=[[]] * len(r["steps"]),
                     answer=[]) for r in records]
    return [dict(question=vocab.encode(r["question"] + "\n"),
                 steps=[vocab.encode(s + "\n") for s in r["steps"]],
                 answer=vocab.encode("### " + r["answer"]) + [vocab.eos]) for r in records]


# -----------------------------------------------------------------------------
# The curriculum layout. At stage k an example reads
#     question\n <bot> <latent> x (min(k,K)*c) <eot> steps[k:] ### answer <eos>
# with labels only on the remaining steps and the answer (-100 elsewhere).

METHODS = ("coconut", "cot", "no_cot", "pause_token", "no_thoughts", "pause_as_thought",
           "no_curriculum")


def stage_plan(n_steps, method, stage, c_thought, max_latent_stage, pad_latent_to_max):
    """(language steps dropped, thoughts, whether <bot>/<eot> mark them) at a stage."""
    K = max_latent_stage
    if method == "cot":
        return 0, 0, False
    if method == "no_cot":
        return n_steps, 0, False
    if method == "pause_token":  # no-CoT with as many <pause> tokens as Coconut's thoughts
        return n_steps, K * c_thought, False
    if method == "no_curriculum":  # straight to the last stage
        stage = K + 1
    dropped = n_steps if stage > K else min(stage, n_steps)
    n = min(stage, K) if pad_latent_to_max else min(stage, K, n_steps)
    if method == "no_thoughts":  # the curriculum drops steps but puts nothing in their place
        return dropped, 0, False
    return dropped, n * c_thought, True  # coconut, pause_as_thought, no_curriculum


def layout(ex, vocab, method, stage, c_thought=1, max_latent_stage=6, pad_latent_to_max=False,
           n_latent=None, prompt_only=False):
    """(ids, labels, first thought's index) of a tokenized example at a curriculum stage.

    n_latent overrides the number of thoughts (inference with more or fewer than trained).
    prompt_only stops after the thoughts: what generation starts from.
    """
    dropped, n, marked = stage_plan(len(ex["steps"]), method, stage, c_thought,
                                    max_latent_stage, pad_latent_to_max)
    if n_latent is not None and (marked or method == "pause_token"):
        n = n_latent
    thought = vocab.pause if method in ("pause_token", "pause_as_thought") else vocab.latent
    prefix = ex["question"] + [vocab.bot] * marked + [thought] * n + [vocab.eot] * marked
    rest = [] if prompt_only else [t for s in ex["steps"][dropped:] for t in s] + ex["answer"]
    return prefix + rest, [-100] * len(prefix) + rest, len(ex["question"]) + marked


def collate(rows, vocab, device="cpu"):
    """Batch (ids, labels, thought_index) rows so every row's thoughts sit in the same columns.

    Rows are left-padded so their first thoughts align at column `start`, then right-padded to
    the longest row. Each row's positions start at 0 at its first real token. The latent loop
    then feeds one column per pass for the whole batch.
    """
    start = max(r[2] for r in rows)
    T = max(start - at + len(ids) for ids, _, at in rows)
    B = len(rows)
    idx = torch.full((B, T), vocab.eos, dtype=torch.long)
    labels = torch.full((B, T), -100, dtype=torch.long)
    pos = torch.zeros((B, T), dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.bool)
    for b, (ids, lab, at) in enumerate(rows):
        left = start - at
        idx[b, left:left + len(ids)] = torch.tensor(ids)
        labels[b, left:left + len(ids)] = torch.tensor(lab)
        pos[b, left:left + len(ids)] = torch.arange(len(ids))
        mask[b, left:left + len(ids)] = True
    latent = idx == vocab.latent  # (B, T) columns whose input is a continuous thought
    n_latent = int(latent.sum(1).max())  # thoughts are contiguous from `start` in every row
    return dict(idx=idx.to(device), labels=labels.to(device), pos=pos.to(device),
                mask=mask.to(device), latent=latent.to(device), start=start, n_latent=n_latent)


def batch_order(lengths, per_step, rng, sort_chunk=0):
    """An epoch's batches: lists of per_step example indices, shuffled by rng; the ragged end
    is dropped. A batch is as long as its longest question plus its longest remainder (see
    collate), so with sort_chunk > 0 each run of that many batches is regrouped by question
    length (`lengths`), which cuts the padding, and the batches are shuffled again so that
    lengths do not drift through the epoch."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    n_steps = len(order) // per_step
    steps = [order[s * per_step:(s + 1) * per_step] for s in range(n_steps)]
    if sort_chunk > 0:
        for c in range(0, n_steps, sort_chunk):
            chunk = sorted(sum(steps[c:c + sort_chunk], []), key=lambda i: lengths[i])
            steps[c:c + sort_chunk] = [chunk[k:k + per_step] for k in range(0, len(chunk), per_step)]
        rng.shuffle(steps)
    return steps


# -----------------------------------------------------------------------------

if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(description="Write ProsQA/ProntoQA splits or print file stats.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for task in ("prosqa", "prontoqa"):
        p = sub.add_parser(task, help=f"write {task}_{{train,valid,test}}.json, "
                                      f"by default the paper's sizes {SPLIT_SIZES[task]}")
        p.add_argument("--out_dir", default=os.path.join("data", task))
        for split in ("train", "valid", "test"):
            p.add_argument(f"--n_{split}", type=int, default=None)
        p.add_argument("--seed", type=int, default=0)
        if task == "prosqa":
            p.add_argument("--n_nodes", type=int, default=28, help="nodes before edgeless ones go")
            p.add_argument("--min_hops", type=int, default=3)
            p.add_argument("--max_hops", type=int, default=6)
    p = sub.add_parser("stats", help="print the statistics of a data file")
    p.add_argument("file")
    args = vars(parser.parse_args())
    cmd = args.pop("cmd")
    if cmd == "stats":
        print_stats(args["file"])
    else:
        t0 = time.time()
        for path in write_splits(cmd, **args):
            print(f"wrote {path}")
        print(f"took {time.time() - t0:.1f}s")
