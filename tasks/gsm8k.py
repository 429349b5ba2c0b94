"""
GSM8k-Aug, the paper's math data, from the iCoT text files (one "question||<<...>> <<...>> ##
answer" per line) into the official Coconut format. It is not generated here (no SIZES, no
example): convert the files once, then train on them (config/gsm8k_cot.py).

    python -m tasks gsm8k path/to/icot/gsm8k    # its {train,valid,test}.txt -> data/gsm8k/*.json
"""
import json
import os

from files import atomic_write


def answer(text):
    """The number after the last '#', without thousands separators (GSM8k writes 1,000)."""
    return text.split("#")[-1].replace(",", "").strip()


def convert(src, dst):
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
                chain, sep2, final = rest.rpartition("##")
                if not (sep and sep2 and question.strip() and final.strip()):
                    raise ValueError(f"{path}, line {i}: expected 'question||<<...>> <<...>> ## answer', "
                                     f"got {line.strip()[:80]!r}")
                steps = chain.split()
                bad = [s for s in steps if not (s.startswith("<<") and s.endswith(">>"))]
                if bad:
                    raise ValueError(f"{path}, line {i}: step {bad[0]!r} is not of the form <<expression=value>>")
                records.append({"question": question.strip(), "steps": steps, "answer": final.strip()})
        converted[split] = records
    os.makedirs(dst, exist_ok=True)
    paths = []
    for split, records in converted.items():
        paths.append(os.path.join(dst, f"gsm8k_{split}.json"))
        with atomic_write(paths[-1]) as f:
            json.dump(records, f)
    return paths
