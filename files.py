"""
The files this project reads and writes: data in the official Coconut format (a JSON list of
{question, steps, answer} records), read with a check of every record, and atomic_write, which
every file the project writes goes through (checkpoints, logs, data splits, exported models,
downloaded weights), so that a killed run or a full disk never leaves half a file behind.
"""
import json
import os
import tempfile
from contextlib import contextmanager


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
        raise FileNotFoundError(f"{path}: no such file; generate one with `python -m tasks prosqa` "
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
