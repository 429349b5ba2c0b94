#!/usr/bin/env bash
# The arithmetic table on a CPU, the paper's way: per seed, the CoT run (config/arith_cot_cpu.py,
# also the CoT baseline), then Coconut, pause as thought, pause token and w/o curriculum from its
# checkpoint at stage 1 (config/arith_cpu.py), and No-CoT from scratch; each best.pt scored on the
# test split (every answer kept: RUN/test.json); then mean, spread and minimum over seeds, and
# Coconut against each other method seed by seed (McNemar's test). Two seeds run at once, one
# thread each (on 2 cores that gets 1.3-1.4x the work of one run on both cores). Skips finished
# runs.
#   bash reproduce_arith.sh [runs] [first_seed] [last_seed] [methods...]
#   bash reproduce_arith.sh runs 0 7                       # 8 seeds, every method: hours
#   bash reproduce_arith.sh runs 0 1 coconut pause_as_thought
set -u
runs=${1:-runs}; first=${2:-0}; last=${3:-7}; shift 3 2>/dev/null || shift $#
methods=${*:-coconut pause_as_thought pause_token no_curriculum no_cot}
mkdir -p "$runs"
run() {  # name, train.py arguments...: train unless done, then score best.pt on the test split
    local name=$1; shift
    if [ ! -f "$runs/$name/test.json" ]; then
        local t0=$SECONDS
        python train.py "$@" --out_dir="$runs/$name" --overwrite=True > "$runs/$name.log" 2>&1 &&
        echo "{\"wall_s\": $((SECONDS - t0))}" > "$runs/$name.time.json" &&
        python train.py --eval_only=True --out_dir="$runs/$name" --eval_out="$runs/$name/test.json" \
            > /dev/null || echo "$name failed: see $runs/$name.log"
    fi
}
seed() {  # every run of one seed, in order: CoT first, the others start from it
    local s=$1
    run "arith-cot-s$s" config/arith_cot_cpu.py --seed="$s"
    for m in $methods; do
        if [ "$m" = no_cot ]; then  # from scratch, as the paper's No-CoT
            run "arith-$m-s$s" config/arith_cot_cpu.py --method=no_cot --seed="$s"
        else
            run "arith-$m-s$s" config/arith_cpu.py --method="$m" --seed="$s" \
                --init_from="$runs/arith-cot-s$s/best.pt"
        fi
    done
}
export OMP_NUM_THREADS=1
[ -f data/arith/meta.json ] || python -m tasks arith --n_train=20000 > /dev/null  # once, before two runs read it
for ((s = first; s <= last; s += 2)); do
    seed "$s" &
    if ((s + 1 <= last)); then seed $((s + 1)) & fi
    wait
done
# each method over the seeds, then Coconut against each of the others seed by seed, on the same
# 500 questions (McNemar's exact test)
python scoring.py table "$runs/arith-{method}-s{seed}/test.json" coconut cot $methods
