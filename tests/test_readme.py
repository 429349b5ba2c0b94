"""README.md's reading order lists every Python file of the project with its real line count
(a file added, removed or grown without the README saying so fails here), and every script it
names exists."""
import glob
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_reading_order_matches_the_tree():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    block = readme.split("## Reading order", 1)[1].split("```")[1]
    listed = {name: int(n) for name, n in re.findall(r"^(\w+\.py)\s+(\d+)\s", block, re.M)}
    files = {}
    for path in glob.glob(os.path.join(ROOT, "*.py")):
        with open(path) as f:
            files[os.path.basename(path)] = sum(1 for _ in f)
    assert listed == files
    for script in re.findall(r"^(\S+\.sh)", block, re.M):
        assert os.path.isfile(os.path.join(ROOT, script)), script


def test_lines_are_at_most_100_characters():
    with open(os.path.join(ROOT, "README.md")) as f:
        long = [i + 1 for i, line in enumerate(f) if len(line.rstrip("\n")) > 100]
    assert not long, f"README.md lines over 100 characters: {long}"


def test_what_the_readme_copies_from_the_code_is_the_code():
    """The README shows the latent loop and the curriculum's diagram as the code has them, and
    names every method of data.METHODS: a change to either side without the other fails here."""
    import data
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    blocks = re.findall(r"```(\w*)\n(.*?)```", readme, re.S)
    loop = [b for lang, b in blocks if lang == "python" and "latent[:, t:t + 1" in b]
    diagram = [b for lang, b in blocks if b.startswith("stage 0:")]
    assert len(loop) == 1 and len(diagram) == 1
    with open(os.path.join(ROOT, "coconut.py")) as f:
        assert loop[0] in f.read()
    assert diagram[0] in data.__doc__
    said = readme.split("The methods (`--method=`", 1)[1].split("\n\n", 1)[0]
    assert set(re.findall(r"`(\w+)`", said)) == set(data.METHODS)
