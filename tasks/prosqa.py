"""
ProsQA: "Is Tom a lempus or scrompus?" over a random DAG of "is a" statements (the paper's
Section 4). The paper's Algorithm 1 taken literally gives ~5 names per example; the
probabilities below were fitted to the 800 released examples and reproduce their statistics
(docs/data.md).

    python -m tasks prosqa --n_train=2000                          # as the released data
    python -m tasks prosqa --n_nodes=8 --min_hops=2 --max_hops=3    # ProsQA-small
"""
import math
import re

from tasks.stats import shares, summarize

SIZES = (17886, 300, 500)  # train, valid, test: the paper's
KNOBS = dict(n_nodes=28, min_hops=3, max_hops=6, mean_parents=1.5)  # these defaults make the official data
# (mean_parents: how many parents a node draws on average; more make denser graphs)


def check(n_nodes, min_hops, max_hops, mean_parents):
    if n_nodes < 4:
        raise ValueError(f"n_nodes={n_nodes}: need at least 4 nodes (two names and a leaf each)")
    if n_nodes > 2 + len(CONCEPTS):
        raise ValueError(f"n_nodes={n_nodes}: at most {2 + len(CONCEPTS)}, there are only "
                         f"{len(CONCEPTS)} concepts to name the nodes with")
    if not 1 <= min_hops <= max_hops:
        raise ValueError(f"min_hops={min_hops}, max_hops={max_hops}: need 1 <= min_hops <= max_hops")
    if not 0.1 <= mean_parents <= 10:
        raise ValueError(f"mean_parents={mean_parents}: must be in [0.1, 10]")

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

def random_graph(rng, n_nodes, mean_parents=1.5):
    """One random DAG: edges (parent, child) over node ids 0..n_nodes-1, and each node's label.
    Seeds 0 and 1 become the two candidate root names; label bit 1 (2) = reachable from seed 0 (1)."""
    label, depth, edges = [1, 2], [0, 0], []
    only = {1: [0], 2: [1]}  # nodes reachable from exactly one seed: where most parents come from
    for idx in range(2, n_nodes):
        k, u = poisson(rng, mean_parents), rng.random()
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

def example(rng, n_nodes=28, min_hops=3, max_hops=6, mean_parents=1.5):
    """One ProsQA record in the official format; rejects graphs until one fits the hop range."""
    for _ in range(MAX_REJECTS):
        edges, label = random_graph(rng, n_nodes, mean_parents)
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

FACT = re.compile(r"(?:Every )?(\w+) is an? (\w+)\.")
QUERY = re.compile(r"Is (\w+) an? (\w+) or (\w+)\?")

def parse(question):
    """The record of a question in ProsQA's form ("Every X is a Y." facts, then "Is Tom a A or
    B?"): its answer and its graph, as example() writes them (idx_to_symbol, edges, root,
    target: the option the root reaches, neg_target), no steps. ValueError, naming the part that
    does not parse, otherwise."""
    facts, _, query = question.strip().rpartition(" Is ")
    m = QUERY.fullmatch("Is " + query)
    if not m:
        raise ValueError(f"the question must end with 'Is NAME a X or Y?', not {query!r}")
    sym, edges = [], []
    node = lambda name: sym.index(name) if name in sym else sym.append(name) or len(sym) - 1
    for fact in re.split(r"(?<=\.) ", facts.strip()) if facts.strip() else []:
        f = FACT.fullmatch(fact)
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
    return dict(question=question, steps=[], answer=f"{root} is a {sym[target]}.", idx_to_symbol=sym,
                edges=edges, root=sym.index(root), target=target, neg_target=neg)


def stats(records):
    """The graph statistics of docs/data.md's table, for records that carry their graph
    (generated ones, and the official release); {} otherwise."""
    if not all("edges" in r and "idx_to_symbol" in r for r in records):
        return {}
    names, paths, outdeg, first = [], [], [], []
    for r in records:
        children, parents = adjacency(len(r["idx_to_symbol"]), r["edges"])
        names.append(sum(not ps for ps in parents))
        outdeg += [len(ch) for ch in children]
        paths.append(count_shortest_paths(parents, bfs(children, r["root"])).get(r["target"], 0))
        options = r["question"].rsplit(" or ", 1)[0]  # "... Is Tom a X" where X is listed first
        first.append(options.endswith(" " + r["idx_to_symbol"][r["target"]]))
    return {"nodes": summarize([len(r["idx_to_symbol"]) for r in records]),
            "edges": summarize([len(r["edges"]) for r in records]),
            "names": summarize(names), "names_share": shares(names),
            "paths": summarize(paths), "out_degree": shares(outdeg, top=5),
            "correct_first": 100 * sum(first) / len(first)}
