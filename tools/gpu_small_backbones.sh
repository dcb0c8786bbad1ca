#!/bin/bash
# Smaller GRU and attention models (issue 16 item 4: the backbones' model step is their render
# cost), every instrument x variant at once on one GPU, one process each. Datasets carried as
# plain folders (`run` carry: data/flute data/violin ...):
#
#     bash tools/gpu_small_backbones.sh $OUT SECONDS "flute violin trumpet cello" [VARIANTS]
#
# VARIANTS: names from the table below (default: all of them). Each model comes back in
# $OUT/INST.tar (model folders + log.jsonl + the exact command line).
set -u
OUT=${1:?out dir}
T=${2:-480}
INSTS=${3:-"flute violin trumpet cello"}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD OMP_NUM_THREADS=1
mkdir -p work/models work/runs work/logs "$OUT"
COMMON="--steps 1000000 --time-limit $T --batch 16 --crop 256 --ckpt-every 100000 --log-every 10 --lr 1e-3 --amp-bias -2 --noise-warmup 400"
declare -A VAR=(
  [gru64]="--backbone gru --backbone-kw {\"hidden\":64,\"layers\":1} --pre-dim 64"
  [gru128]="--backbone gru --backbone-kw {\"hidden\":128,\"layers\":1} --pre-dim 64"
  [attention32]="--backbone attention --backbone-kw {\"dim\":32,\"heads\":2,\"layers\":1,\"window\":32,\"ff_mult\":2} --pre-dim 64"
  [attention48]="--backbone attention --backbone-kw {\"dim\":48,\"heads\":4,\"layers\":1,\"window\":48,\"ff_mult\":2} --pre-dim 64"
)
NAMES=${4:-"${!VAR[*]}"}
for inst in $INSTS; do
    # the v2 clarinet from recordings: its card's data and options
    if [ "$inst" = clarinet ]; then DATA="data/clarinet-rec --features 9 --tilt 0.3 --velocity-dropout 0.5 --log-weight 2"
    else DATA="data/$inst"; fi
    for v in $NAMES; do
        n=$inst-$v
        cmd="rtsynth train $DATA -o work/models/$n --run-dir work/runs/$n $COMMON ${VAR[$v]}"
        echo "$cmd" > work/logs/$n.cmd
        python3 -m rtsynth.train.cli $DATA -o work/models/$n --run-dir work/runs/$n $COMMON ${VAR[$v]} \
            > work/logs/$n.log 2>&1 &
    done
done
wait
for inst in $INSTS; do
    files=""
    for v in $NAMES; do
        n=$inst-$v
        tail -1 work/logs/$n.log; tail -1 work/runs/$n/log.jsonl 2>/dev/null; echo
        for f in models/$n runs/$n/log.jsonl logs/$n.log logs/$n.cmd; do
            [ -e work/$f ] && files="$files $f"
        done
    done
    tar cf "$OUT/$inst.tar" -C work $files
done
nvidia-smi --query-gpu=name,memory.used --format=csv
