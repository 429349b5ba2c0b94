#!/usr/bin/env bash
# One command for a GPU: Coconut and CoT from scratch on full-size ProsQA (config/prosqa_gpu.py)
# and on the small variant (config/prosqa_cpu.py), all four runs at once on one GPU, then each
# best checkpoint on its test split. Logs and results go to runs/ (or the folder given).
#   bash reproduce.sh [runs]
set -u
runs=${1:-runs}
mkdir -p "$runs"
train() {  # name, config, extra flags...
    local name=$1 cfg=$2; shift 2
    python train.py "$cfg" --out_dir="$runs/$name" "$@" > "$runs/$name.log" 2>&1 &&
    python train.py "$cfg" --out_dir="$runs/$name" --eval_only=True \
        --val_data="$(python -c "import sys; from configurator import configure; c = configure({'data_dir': '', 'task': ''}, [sys.argv[1]]); print(c['data_dir'] or 'data/' + c['task'])" "$cfg")/prosqa_test.json" \
        > "$runs/$name.test.log" 2>&1
}
train full-coconut config/prosqa_gpu.py --method=coconut &
train full-cot config/prosqa_gpu.py --method=cot &
train small-coconut config/prosqa_cpu.py --method=coconut &
train small-cot config/prosqa_cpu.py --method=cot &
wait
printf '%-15s %s\n' run "test result"
for name in full-coconut full-cot small-coconut small-cot; do
    printf '%-15s %s\n' "$name" "$(tail -n 1 "$runs/$name.test.log")"
done
