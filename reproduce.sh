#!/usr/bin/env bash
# One command for a GPU: Coconut and CoT from scratch on full-size ProsQA (config/prosqa_gpu.py)
# and on the small variant (config/prosqa_cpu.py), all four runs at once on one GPU, then each
# best checkpoint on its test split. Logs and results go to runs/ (or the folder given); flags
# after it go to every training run (e.g. --num_epochs=1 for a smoke test).
#   bash reproduce.sh [runs] [--flag=value ...]
set -u
runs=${1:-runs}
shift || true
mkdir -p "$runs"
train() {  # name, config, flags...
    local name=$1 cfg=$2; shift 2
    python train.py "$cfg" --out_dir="$runs/$name" "$@" > "$runs/$name.log" 2>&1 &&
    python train.py --eval_only=True --out_dir="$runs/$name" > "$runs/$name.test.log" 2>&1
}
train full-coconut config/prosqa_gpu.py --method=coconut "$@" &
train full-cot config/prosqa_gpu.py --method=cot "$@" &
train small-coconut config/prosqa_cpu.py --method=coconut "$@" &
train small-cot config/prosqa_cpu.py --method=cot "$@" &
wait
printf '%-15s %s\n' run "test split (eval_only)"
for name in full-coconut full-cot small-coconut small-cot; do
    printf '%-15s %s\n' "$name" "$(tail -n 1 "$runs/$name.test.log" 2>/dev/null || echo 'failed: see the log')"
done
