"""bench.py end to end on tiny sizes: it runs, and its last line is JSON holding every figure.
Speed is not asserted here (timings on a shared machine say nothing); run bench.py for that."""
import json
import os
import statistics
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURES = ["train_ms_coconut", "train_ms_cot", "train_ms_reference", "train_tokens_per_s",
           "train_step_ratio_vs_cot", "train_speedup_vs_reference", "gen_questions_per_s",
           "gen_recompute_questions_per_s", "generate_speedup_vs_recompute", "latent_step_us",
           "quickstart_tokens_per_s", "quickstart_train_s", "quickstart_words_speedup"]
GPU_ONLY = ["mfu", "mfu_cot", "latent_step_floor_us",  # None on CPU: no datasheet figures there
            "train_ms_coconut_other_dtype"]  # the step in the other precision: CUDA only


def test_quick_bench_prints_every_figure_as_json():
    env = dict(os.environ, OMP_NUM_THREADS="1")  # tiny ops: more threads than cores only slow down
    p = subprocess.run([sys.executable, "bench.py", "--quick=True"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    lines = p.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert "training step" in p.stdout and "generation" in p.stdout  # the table came first
    assert isinstance(result["device"], str) and result["device"]
    for key in FIGURES:
        assert isinstance(result[key], (int, float)) and result[key] > 0, key
    on_cpu = result["device"].startswith("cpu")
    for key in GPU_ONLY:
        assert (on_cpu and result[key] is None) or result[key] > 0, key
    # the step ratio is the median of the rounds' ratios (each round times both steps back to back)
    rounds = result["train_step_ratio_rounds"]
    assert len(rounds) == 2 and all(x > 0 for x in rounds)  # QUICK's repeats
    assert statistics.median(rounds) == pytest.approx(result["train_step_ratio_vs_cot"], rel=1e-3)
    compiled = result["latent_step_us_compiled"]  # None on CPU, or if torch.compile failed
    assert compiled is None or compiled > 0
    # both generators answered the same questions with the same tokens (float32 on CPU)
    if on_cpu:
        assert result["gen_same_tokens"] is True
