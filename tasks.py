"""
The data files: a checked loader for the official {question, steps, answer} JSON and the
synthetic tasks written in it (ProsQA and ProntoQA generators fitted to the released data,
chained arithmetic in GSM8k-Aug's format), the train/valid/test splits that train.py generates
on first use, a converter for the real GSM8k-Aug, statistics to compare any file with the
released data, and atomic_write, which every file this project writes goes through.

    python tasks.py prosqa                      # writes data/prosqa/prosqa_{train,valid,test}.json
    python tasks.py prontoqa --n_train=1000     # writes data/prontoqa/...
    python tasks.py arith --max_steps=5         # writes data/arith/...
    python tasks.py gsm8k path/to/icot/gsm8k    # its {train,valid,test}.txt -> data/gsm8k/*.json
    python tasks.py stats data/prosqa/prosqa_valid.json
"""
import json
import math
import os
import random
import re
import tempfile
import time
from contextlib import contextmanager

from data import encode


# -----------------------------------------------------------------------------
# Files: the official data format, where a task's splits live, and writing without half files

def task_dir(task, data_dir=""):
    """Where a task's splits live: data_dir, by default data/{task}."""
    return data_dir or os.path.join("data", task)


def split_path(task, data_dir, split):
    """task_dir/{task}_{split}.json."""
    return os.path.join(task_dir(task, data_dir), f"{task}_{split}.json")


@contextmanager
def atomic_write(path, mode="w"):
    """An open file whose contents replace `path` only once all of it is written: a temporary
    file beside it, renamed over it at the end. On any failure (a full disk, a killed run) the
    temporary file is removed and `path` keeps what it held."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.chmod(tmp, 0o644)  # as an ordinary new file (mkstemp makes it private)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_records(path):
    """A JSON list of {question: str, steps: [str], answer: str} objects (extra fields kept)."""
    fmt = "expected a JSON list of {question, steps, answer} objects (the official Coconut format)"
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file; generate one with `python tasks.py prosqa` "
                                "(or prontoqa) or pass the path to an official data file")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder; {fmt}")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {e.start}); {fmt}") from None
    if not text.strip():
        raise ValueError(f"{path}: the file is empty; {fmt}")
    try:
        records = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON at line {e.lineno} col {e.colno}: {e.msg}") from None
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply; {fmt}") from None
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
# ProsQA: "Is Tom a lempus or scrompus?" over a random DAG of "is a" statements.
# The paper's Algorithm 1 taken literally gives ~5 names per example; the probabilities below were
# fitted to the 800 released examples and reproduce their statistics (docs/data.md).

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

PROSQA_FACT = re.compile(r"(?:Every )?(\w+) is an? (\w+)\.")
PROSQA_QUERY = re.compile(r"Is (\w+) an? (\w+) or (\w+)\?")

def parse_prosqa(question):
    """The graph of a question in ProsQA's form ("Every X is a Y." facts, then "Is Tom a A or
    B?"), as the fields prosqa_example writes: idx_to_symbol, edges, root, target (the option
    the root reaches), neg_target. ValueError, naming the part that does not parse, otherwise."""
    facts, _, query = question.strip().rpartition(" Is ")
    m = PROSQA_QUERY.fullmatch("Is " + query)
    if not m:
        raise ValueError(f"the question must end with 'Is NAME a X or Y?', not {query!r}")
    sym, edges = [], []
    node = lambda name: sym.index(name) if name in sym else sym.append(name) or len(sym) - 1
    for fact in re.split(r"(?<=\.) ", facts.strip()) if facts.strip() else []:
        f = PROSQA_FACT.fullmatch(fact)
        if not f:
            raise ValueError(f"{fact!r} is not a fact of the form 'Every X is a Y.' or 'Tom is a Y.'")
        edges.append([node(f[1]), node(f[2])])
    root, options = m[1], [m[2], m[3]]
    missing = [name for name in [root] + options if name not in sym]
    if missing:
        raise ValueError(f"{', '.join(missing)} of the query appear in no fact")
    children, _ = adjacency(len(sym), edges)
    reach = bfs(children, sym.index(root))
    reached = [o for o in options if sym.index(o) in reach]
    if len(reached) != 1:
        raise ValueError(f"{root} reaches {len(reached)} of the options {options}; a ProsQA "
                         "question has exactly one right answer")
    target = sym.index(reached[0])
    neg = sym.index(options[1] if reached[0] == options[0] else options[0])
    return dict(idx_to_symbol=sym, edges=edges, root=sym.index(root), target=target, neg_target=neg)

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

def prontoqa_example(rng, hops=5):
    """One record: E is a c_h, c_h is a c_h-1, ..., c1 is a root, each c_i also is an extra d_i; the
    query asks about c1's property, and distractors (a tree b -> a, D with the opposite property)
    mislead. hops=5 is the released data; fewer hops make shorter questions (4h + 3 rules)."""
    if hops < 1:
        raise ValueError(f"hops={hops}: need hops >= 1")
    h = hops
    c = rng.sample(PRONTO_CONCEPTS, 2 * h + 4)
    root, chain, extra, (a, b), D = c[0], c[1:h + 1], c[h + 1:2 * h + 1], c[2 * h + 1:-1], c[-1]
    E = rng.choice(PRONTO_ENTITIES)
    props = [rng.choice(f) for f in rng.sample(PROPERTY_FAMILIES, 2 * h + 1)]  # c1..ch, d1..dh, b
    # negation rates measured on the released data: c1 (the one asked about) is negated most
    negs = ([rng.random() < 0.4715] + [rng.random() < 0.2766 for _ in range(h - 1)]
            + [rng.random() < 1 / 3 for _ in range(h + 1)])
    links = [pronto_rule(rng, x, y) for x, y in zip(chain, [root] + chain[:-1])]  # c_i is a c_i-1
    prop_rules = [pronto_rule(rng, x, p, True, n) for x, p, n in zip(chain + extra + [b], props, negs)]
    rules = (links + prop_rules + [pronto_rule(rng, x, y) for x, y in zip(chain, extra)]
             + [pronto_rule(rng, b, a), pronto_rule(rng, D, props[0], True, not negs[0])])
    # the chain of thought reuses the exact rule strings: c_h -> ... -> c1 -> c1's property
    used = links[1:][::-1] + [prop_rules[0]]
    steps = [f"{E} is {with_article(x)}. {rule}" for x, rule in zip(chain[::-1], used)]
    conclusion = "not " if negs[0] else ""
    steps.append(f"{E} is {conclusion}{props[0]}.")
    rng.shuffle(rules)
    facts = [f"{E} is {with_article(chain[-1])}.", f"{E} is {with_article(b)}."]
    rng.shuffle(facts)
    true = rng.random() < 0.5
    query = conclusion if true else ("" if negs[0] else "not ")
    question = " ".join(rules + facts) + f" True or false: {E} is {query}{props[0]}."
    return {"question": question, "steps": steps, "answer": "True" if true else "False"}

def generate_prontoqa(n, seed=0, rng=None, **knobs):
    rng = random.Random(seed) if rng is None else rng
    return [prontoqa_example(rng, **knobs) for _ in range(n)]

# -----------------------------------------------------------------------------
# Chained arithmetic in GSM8k-Aug's format: "Max has 10 cards. Max gives away 1. Max doubles
# them. How many cards does Max have?", steps "<<10-1=9>>", "<<9*2=18>>", answer "18". Every
# step starts from the previous step's result, so a value must be carried from step to step:
# what a continuous thought can do in one pass of the whole model and a pause token cannot.

ARITH_ITEMS = ["cards", "apples", "coins", "stamps", "marbles", "books", "shells", "pens"]
ARITH_SAY = {"+": ["{n} gets {a} more.", "{n} finds {a} more.", "{n} buys {a} more."],
             "-": ["{n} gives away {a}.", "{n} loses {a}.", "{n} sells {a}."],
             "*": {2: "{n} doubles them.", 3: "{n} triples them."},
             "/": {2: "{n} gives away half of them.", 3: "{n} keeps a third of them."}}

def arith_step(rng, x, max_value, ops):
    """(operator, operand, result) of one step from x that stays within 0..max_value, or None
    if no operator in ops can."""
    choices = []
    if "+" in ops and x < max_value:
        choices.append(("+", rng.randint(1, max_value - x)))
    if "-" in ops and x > 0:
        choices.append(("-", rng.randint(1, x)))
    if "*" in ops and 0 < x and 2 * x <= max_value:
        choices.append(("*", rng.choice([m for m in (2, 3) if m * x <= max_value])))
    if "/" in ops and any(x % d == 0 and x >= d for d in (2, 3)):
        choices.append(("/", rng.choice([d for d in (2, 3) if x % d == 0 and x >= d])))
    if not choices:
        return None
    op, a = rng.choice(choices)
    return op, a, {"+": x + a, "-": x - a, "*": x * a, "/": x // a}[op]

def arith_example(rng, min_steps=3, max_steps=4, max_value=30, ops="+-*/"):
    """One record: a start value and min_steps..max_steps operations, each on the last result."""
    if not 1 <= min_steps <= max_steps:
        raise ValueError(f"min_steps={min_steps}, max_steps={max_steps}: need 1 <= min_steps <= max_steps")
    if max_value < 3 or not ops or set(ops) - set("+-*/"):
        raise ValueError(f"max_value={max_value}, ops={ops!r}: need max_value >= 3 and ops from '+-*/'")
    name, item = rng.choice(NAMES), rng.choice(ARITH_ITEMS)
    x = rng.randint(1, max_value)
    sentences, steps = [f"{name} has {x} {item}."], []
    for _ in range(rng.randint(min_steps, max_steps)):
        step = arith_step(rng, x, max_value, ops)
        if step is None:  # e.g. ops='*' from a value that cannot grow: start again
            return arith_example(rng, min_steps, max_steps, max_value, ops)
        op, a, y = step
        say = ARITH_SAY[op]
        sentences.append((say[a] if isinstance(say, dict) else rng.choice(say)).format(n=name, a=a))
        steps.append(f"<<{x}{op}{a}={y}>>")
        x = y
    question = " ".join(sentences) + f" How many {item} does {name} have?"
    return {"question": question, "steps": steps, "answer": str(x)}

def generate_arith(n, seed=0, rng=None, **knobs):
    rng = random.Random(seed) if rng is None else rng
    return [arith_example(rng, **knobs) for _ in range(n)]


# -----------------------------------------------------------------------------
# GSM8k-Aug from the iCoT text files (one "question||<<...>> <<...>> ## answer" per line), as
# the official Coconut data: {question, steps, answer}

def convert_gsm8k(src, dst):
    """Read src/{train,valid,test}.txt, write dst/gsm8k_{train,valid,test}.json; ValueError
    naming the file and line of a malformed record. Returns the paths written."""
    converted = {}
    for split in ("train", "valid", "test"):
        path = os.path.join(src, f"{split}.txt")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such file; the iCoT release has train.txt, "
                                    "valid.txt and test.txt in one folder")
        records = []
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                question, sep, rest = line.strip().partition("||")
                chain, sep2, answer = rest.rpartition("##")
                if not (sep and sep2 and question.strip() and answer.strip()):
                    raise ValueError(f"{path}, line {i}: expected 'question||<<...>> <<...>> ## answer', "
                                     f"got {line.strip()[:80]!r}")
                steps = chain.split()
                bad = [s for s in steps if not (s.startswith("<<") and s.endswith(">>"))]
                if bad:
                    raise ValueError(f"{path}, line {i}: step {bad[0]!r} is not of the form <<expression=value>>")
                records.append({"question": question.strip(), "steps": steps, "answer": answer.strip()})
        converted[split] = records
    os.makedirs(dst, exist_ok=True)
    paths = []
    for split, records in converted.items():
        paths.append(os.path.join(dst, f"gsm8k_{split}.json"))
        with atomic_write(paths[-1]) as f:
            json.dump(records, f)
    return paths


# -----------------------------------------------------------------------------
# Splits, generated on first use

SPLIT_SIZES = {"prosqa": (17886, 300, 500), "prontoqa": (9000, 200, 800),  # the paper's
               "arith": (20000, 300, 500)}
EXAMPLE_FNS = {"prosqa": prosqa_example, "prontoqa": prontoqa_example, "arith": arith_example}
KNOBS = {"prosqa": ("n_nodes", "min_hops", "max_hops"), "prontoqa": ("hops",),  # train.py's names
         "arith": ("min_steps", "max_steps", "max_value", "ops")}

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

def meta_of(task, n_train=None, n_valid=None, n_test=None, seed=0, **knobs):
    """What meta.json records of generated splits: how to make them again."""
    sizes = {k: v for k, v in dict(n_valid=n_valid, n_test=n_test).items() if v is not None}
    return dict(task=task, n_train=n_train, seed=seed, **knobs, **sizes)


def write_splits(task, out_dir, n_train=None, n_valid=None, n_test=None, seed=0, **knobs):
    """Write out_dir/{task}_{train,valid,test}.json, then meta.json (how they were made, so
    train.py can tell them from other data); returns the three paths."""
    if task not in SPLIT_SIZES:
        raise ValueError(f"unknown task {task!r}, expected one of {sorted(SPLIT_SIZES)}")
    sizes = [d if n is None else n for n, d in zip((n_train, n_valid, n_test), SPLIT_SIZES[task])]
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name, records in zip(("train", "valid", "test"), make_splits(task, *sizes, seed=seed, **knobs)):
        paths.append(os.path.join(out_dir, f"{task}_{name}.json"))
        with atomic_write(paths[-1]) as f:  # a reader never sees a half-written file
            json.dump(records, f)
    with atomic_write(os.path.join(out_dir, "meta.json")) as f:  # last: the splits are complete
        json.dump(meta_of(task, n_train, n_valid, n_test, seed, **knobs), f)
    return paths


def ensure_splits(task, out_dir, n_train=None, seed=0, **knobs):
    """Generate a task's splits into out_dir on first use; refuse data made with other knobs.
    Files without our meta.json are the user's: used as they are, never regenerated."""
    paths = [os.path.join(out_dir, f"{task}_{split}.json") for split in ("train", "valid", "test")]
    meta_path = os.path.join(out_dir, "meta.json")
    meta = meta_of(task, n_train, seed=seed, **knobs)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise SystemExit(f"data_dir={out_dir!r} is a file, not a folder")
    present = [p for p in paths if os.path.exists(p)]
    if present and not os.path.exists(meta_path):  # the user's own files: never regenerated
        if len(present) == len(paths):
            try:
                have = len(load_records(paths[0]))
            except ValueError:  # a malformed file: train.py's loader names the record and field
                have = n_train
            if n_train is not None and have != n_train:
                raise SystemExit(f"{out_dir} holds data of your own (no meta.json) with {have} training "
                                 f"examples, not n_train={n_train}: drop --n_train to train on them, or "
                                 "point data_dir to an empty folder to generate the data asked for")
            return paths
        missing = sorted(set(paths) - set(present))
        raise SystemExit(f"{out_dir} holds {', '.join(map(os.path.basename, present))} but not "
                         f"{', '.join(map(os.path.basename, missing))}: put the missing file there, or "
                         "point data_dir to an empty folder to generate all three")
    if len(present) == len(paths):
        try:
            with open(meta_path) as f:
                old = json.load(f)
        except (OSError, ValueError) as e:
            raise SystemExit(f"{meta_path} is damaged ({e}); delete {out_dir} to generate it anew") from None
        if old != meta:
            raise SystemExit(f"{out_dir} holds data generated with {old}, not {meta}: "
                             "delete it or point data_dir to another folder")
        return paths
    if task not in SPLIT_SIZES:
        hint = (" GSM8k-Aug is not generated here: convert the iCoT text files with python "
                "tasks.py gsm8k FOLDER (see config/gsm8k.py)." if task == "gsm8k" else "")
        raise SystemExit(f"no data for task {task!r}: put {', '.join(paths)} in place (JSON lists "
                         f"of {{question, steps, answer}}).{hint}")
    print(f"generating {task} data into {out_dir} ({meta})")
    return write_splits(task, out_dir, n_train=n_train, seed=seed, **knobs)


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

if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(description="Write a task's splits, convert GSM8k-Aug, or print a data file's statistics.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for task in ("prosqa", "prontoqa", "arith"):
        p = sub.add_parser(task, help=f"write {task}_{{train,valid,test}}.json, "
                                      f"by default the paper's sizes {SPLIT_SIZES[task]}")
        p.add_argument("--out_dir", default=task_dir(task))
        for split in ("train", "valid", "test"):
            p.add_argument(f"--n_{split}", type=int, default=None)
        p.add_argument("--seed", type=int, default=0)
        if task == "prosqa":
            p.add_argument("--n_nodes", type=int, default=28, help="nodes before edgeless ones go")
            p.add_argument("--min_hops", type=int, default=3)
            p.add_argument("--max_hops", type=int, default=6)
        if task == "prontoqa":
            p.add_argument("--hops", type=int, default=5, help="chain length: hops + 1 steps")
        if task == "arith":
            p.add_argument("--min_steps", type=int, default=3)
            p.add_argument("--max_steps", type=int, default=4)
            p.add_argument("--max_value", type=int, default=30, help="every value stays in 0..max_value")
            p.add_argument("--ops", default="+-*/")
    p = sub.add_parser("stats", help="print the statistics of a data file")
    p.add_argument("file")
    p = sub.add_parser("gsm8k", help="convert iCoT's GSM8k-Aug text files into the official JSON")
    p.add_argument("src", help="the folder with train.txt, valid.txt, test.txt")
    p.add_argument("--out_dir", default=task_dir("gsm8k"))
    args = vars(parser.parse_args())
    cmd = args.pop("cmd")
    if cmd == "stats":
        print_stats(args["file"])
    elif cmd == "gsm8k":
        try:
            for path in convert_gsm8k(args["src"], args["out_dir"]):
                print(f"wrote {path}")
        except (FileNotFoundError, ValueError) as e:
            raise SystemExit(str(e))
    else:
        t0 = time.time()
        for path in write_splits(cmd, **args):
            print(f"wrote {path}")
        print(f"took {time.time() - t0:.1f}s")
