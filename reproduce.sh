#!/usr/bin/env bash
# One command for a GPU, in the paper's order: first the CoT runs, then Coconut, from scratch where
# the paper's recipe is (ProsQA: config/prosqa_gpu.py full size, config/prosqa_cpu.py small) and from
# the CoT run's checkpoint at stage 1 where it is not (chained arithmetic, as GSM8k:
# config/arith_cot_cpu.py, then config/arith_cpu.py). The runs of a step share the GPU; each best
# checkpoint is then scored on its test split. Logs and results go to runs/ (or the folder given);
# flags after it go to every training run (e.g. --num_epochs=1 for a smoke test).
#   bash reproduce.sh [runs] [--flag=value ...]
set -u
runs=${1:-runs}
shift || true
mkdir -p "$runs"
train() {  # name, config, flags...
    local name=$1 cfg=$2; shift 2
    python train.py "$cfg" --out_dir="$runs/$name" --overwrite=True "$@" > "$runs/$name.log" 2>&1 &&
    python train.py --eval_only=True --out_dir="$runs/$name" > "$runs/$name.test.log" 2>&1
}
# step 1: CoT (the baseline, and for arithmetic the model Coconut starts from)
train full-cot config/prosqa_gpu.py --method=cot "$@" &
train small-cot config/prosqa_cpu.py --method=cot "$@" &
train arith-cot config/arith_cot_cpu.py "$@" &
wait
# step 2: Coconut
train full-coconut config/prosqa_gpu.py "$@" &
train small-coconut config/prosqa_cpu.py "$@" &
train arith-coconut config/arith_cpu.py --init_from="$runs/arith-cot/best.pt" "$@" &
wait
printf '%-15s %s\n' run "test split (eval_only)"
for name in full-cot full-coconut small-cot small-coconut arith-cot arith-coconut; do
    printf '%-15s %s\n' "$name" "$(tail -n 1 "$runs/$name.test.log" 2>/dev/null || echo 'failed: see the log')"
done
