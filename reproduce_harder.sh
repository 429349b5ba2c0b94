#!/usr/bin/env bash
# Harder questions than any seen in training, scored with no retraining: every trained run of the
# arithmetic table (bash reproduce_arith.sh: 3-4 steps) on 5-step and 6-step questions, and the
# ProsQA-small runs (config/prosqa_cpu.py: 8-node graphs, 2-3 hops; trained here if missing) on
# 4-hop chains in 10-node graphs and on denser graphs (3 parents a node on average, not 1.5).
# Coconut also runs with twice the thoughts it was trained with (coconut_x2), and pause as thought
# with twice its <pause> slots (pause_as_thought_x2: does any extra room help?). Per split: each
# method over seeds (mean, std, min), and Coconut against each other seed by seed on the same
# questions (McNemar's exact test).
#   bash reproduce_harder.sh [runs] [first_seed] [last_seed] [tasks]    # default: runs 0 7 arith prosqa
#   bash reproduce_harder.sh runs 0 7 arith                # the arithmetic runs only: minutes
# Every answer is kept: runs/harder/SPLIT/METHOD-sSEED.json; the tables go to stdout.
set -u
runs=${1:-runs}; first=${2:-0}; last=${3:-7}; shift 3 2>/dev/null || shift $#
todo=${*:-arith prosqa}
export OMP_NUM_THREADS=1
split() {  # name, task, knobs...: a held-out test split of 500 questions (seed 1, not training's 0)
    local name=$1 task=$2; shift 2
    [ -f "data/$name/${task}_test.json" ] || python -m tasks "$task" "$@" --n_train=0 --n_valid=0 \
        --n_test=500 --seed=1 --data_dir="data/$name" > /dev/null
}
score() {  # run, split name, its file, result name, flags...: one run scored on one split
    local run=$1 name=$2 file=$3 as=$4; shift 4
    mkdir -p "$runs/harder/$name"
    [ -f "$runs/$run/best.pt" ] && [ ! -f "$runs/harder/$name/$as.json" ] &&
        python train.py --eval_only=True --out_dir="$runs/$run" --val_data="$file" \
            --eval_out="$runs/harder/$name/$as.json" "$@" > /dev/null
}
table() {  # split name: its table
    echo "== $1"
    python scoring.py table "$runs/harder/$1/{method}-s{seed}.json" coconut coconut_x2 cot \
        pause_as_thought pause_as_thought_x2 no_cot
}

if [[ " $todo " == *" arith "* ]]; then
# Arithmetic: trained on 3-4 steps with 8 thoughts; CoT's chains get room for 6 steps (56 tokens:
# a 6-step question, its chain and answer fill 122 of the 128 positions)
split arith_5 arith --min_steps=5 --max_steps=5
split arith_6 arith --min_steps=6 --max_steps=6
for ((s = first; s <= last; s++)); do
    for m in coconut cot pause_as_thought no_cot; do
        score "arith-$m-s$s" arith_in data/arith/arith_test.json "$m-s$s"
        for n in 5 6; do
            score "arith-$m-s$s" "arith_$n" "data/arith_$n/arith_test.json" "$m-s$s" --max_new_tokens=56
        done
    done
    for n in 5 6; do  # twice the thoughts (or slots) it was trained with
        for m in coconut pause_as_thought; do
            score "arith-$m-s$s" "arith_$n" "data/arith_$n/arith_test.json" "${m}_x2-s$s" --n_latent=16
        done
    done
done
fi

if [[ " $todo " == *" prosqa "* ]]; then
# ProsQA-small: trained on 2-3 hops in 8-node graphs with 3 thoughts (one a hop)
split prosqa_4hop prosqa --n_nodes=10 --min_hops=4 --max_hops=4  # 8 nodes cannot hold 4 hops
split prosqa_dense prosqa --n_nodes=8 --min_hops=2 --max_hops=3 --mean_parents=3.0
prosqa_seed() {  # s: its four runs (trained if missing, one after another), each scored
    local s=$1
    for m in coconut cot pause_as_thought no_cot; do
        [ -f "$runs/prosqa-$m-s$s/best.pt" ] || python train.py config/prosqa_cpu.py --method="$m" \
            --seed="$s" --out_dir="$runs/prosqa-$m-s$s" --overwrite=True > "$runs/prosqa-$m-s$s.log" 2>&1
        score "prosqa-$m-s$s" prosqa_in data/prosqa_small/prosqa_test.json "$m-s$s"
        score "prosqa-$m-s$s" prosqa_4hop data/prosqa_4hop/prosqa_test.json "$m-s$s" --max_new_tokens=64
        score "prosqa-$m-s$s" prosqa_dense data/prosqa_dense/prosqa_test.json "$m-s$s"
    done
    for m in coconut pause_as_thought; do
        score "prosqa-$m-s$s" prosqa_4hop data/prosqa_4hop/prosqa_test.json "${m}_x2-s$s" --n_latent=6
        score "prosqa-$m-s$s" prosqa_dense data/prosqa_dense/prosqa_test.json "${m}_x2-s$s" --n_latent=6
    done
}
[ -f data/prosqa_small/meta.json ] || python -m tasks prosqa --n_nodes=8 --min_hops=2 --max_hops=3 \
    --n_train=28000 --data_dir=data/prosqa_small > /dev/null  # once, before two runs at a time read it
for ((s = first; s <= last; s += 2)); do  # two seeds at once, one thread each
    prosqa_seed "$s" &
    if ((s + 1 <= last)); then prosqa_seed $((s + 1)) & fi
    wait
done
fi

for name in arith_in arith_5 arith_6 prosqa_in prosqa_4hop prosqa_dense; do
    if [ -d "$runs/harder/$name" ]; then table "$name"; fi  # (a missing split is not a failure)
done
