"""
Chained arithmetic in GSM8k-Aug's format: "Max has 10 cards. Max gives away 1. Max doubles
them. How many cards does Max have?", steps "<<10-1=9>>", "<<9*2=18>>", answer "18". Every
step starts from the previous step's result, so a value must be carried from step to step:
what a continuous thought can do in one pass of the whole model and a pause token cannot.

    python -m tasks arith                  # writes data/arith/arith_{train,valid,test}.json
    python -m tasks arith --min_steps=5 --max_steps=6 --out_dir=data/arith_5-6
"""
from tasks import gsm8k
from tasks.prosqa import NAMES

SIZES = (20000, 300, 500)  # train, valid, test
KNOBS = dict(min_steps=3, max_steps=4, max_value=30, ops="+-*/")  # steps, every value in 0..max_value
answer = gsm8k.answer  # read as GSM8k's: a number


def check(min_steps, max_steps, max_value, ops):
    if not 1 <= min_steps <= max_steps:
        raise ValueError(f"min_steps={min_steps}, max_steps={max_steps}: need 1 <= min_steps <= max_steps")
    if max_value < 3 or not ops or set(ops) - set("+-*/"):
        raise ValueError(f"max_value={max_value}, ops={ops!r}: need max_value >= 3 and ops from '+-*/'")

ITEMS = ["cards", "apples", "coins", "stamps", "marbles", "books", "shells", "pens"]
SAY = {"+": ["{n} gets {a} more.", "{n} finds {a} more.", "{n} buys {a} more."],
             "-": ["{n} gives away {a}.", "{n} loses {a}.", "{n} sells {a}."],
             "*": {2: "{n} doubles them.", 3: "{n} triples them."},
             "/": {2: "{n} gives away half of them.", 3: "{n} keeps a third of them."}}

def step_from(rng, x, max_value, ops):
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

def example(rng, min_steps=3, max_steps=4, max_value=30, ops="+-*/"):
    """One record: a start value and min_steps..max_steps operations, each on the last result."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    x = rng.randint(1, max_value)
    sentences, steps = [f"{name} has {x} {item}."], []
    for _ in range(rng.randint(min_steps, max_steps)):
        step = step_from(rng, x, max_value, ops)
        if step is None:  # e.g. ops='*' from a value that cannot grow: start again
            return example(rng, min_steps, max_steps, max_value, ops)
        op, a, y = step
        say = SAY[op]
        sentences.append((say[a] if isinstance(say, dict) else rng.choice(say)).format(n=name, a=a))
        steps.append(f"<<{x}{op}{a}={y}>>")
        x = y
    question = " ".join(sentences) + f" How many {item} does {name} have?"
    return {"question": question, "steps": steps, "answer": str(x)}
