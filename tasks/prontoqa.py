"""
ProntoQA over a fictional ontology, converted the way the Coconut paper does: question = rules
+ facts + query, hops + 1 steps of "fact. rule." pairs, answer "True" or "False". hops=5 makes
the released data's records byte for byte (docs/data.md); fewer hops make shorter questions.

    python -m tasks prontoqa               # writes data/prontoqa/prontoqa_{train,valid,test}.json
    python -m tasks prontoqa --hops=3      # 3 hops, 15 rules, 4 steps
"""
from tasks import prosqa

SIZES = (9000, 200, 800)  # train, valid, test: the paper's
KNOBS = dict(hops=5)  # the chain's length: hops + 1 steps (5: the released data)


def check(hops):
    if hops < 1:
        raise ValueError(f"hops={hops}: need hops >= 1")

ENTITIES = ["Fae", "Rex", "Sally", "Max", "Alex", "Sam", "Polly", "Stella", "Wren"]
CONCEPTS = prosqa.CONCEPTS[:17]  # ProsQA's made-up words, as ProntoQA's
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

def example(rng, hops=5):
    """One record: E is a c_h, c_h is a c_h-1, ..., c1 is a root, each c_i also is an extra d_i; the
    query asks about c1's property, and distractors (a tree b -> a, D with the opposite property)
    mislead. hops=5 is the released data; fewer hops make shorter questions (4h + 3 rules)."""
    h = hops
    c = rng.sample(CONCEPTS, 2 * h + 4)
    root, chain, extra, (a, b), D = c[0], c[1:h + 1], c[h + 1:2 * h + 1], c[2 * h + 1:-1], c[-1]
    E = rng.choice(ENTITIES)
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
