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
