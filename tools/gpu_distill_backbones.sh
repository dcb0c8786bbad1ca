#!/bin/bash
# Small GRU and attention models distilled from the shipped ones (issue 16 item 4), every
# instrument x variant at once on one GPU. `rtsynth train --teacher models/INST-gru` adds the
# L1 of the log controls (harmonic amplitudes, noise gains) against the teacher's, frame by
# frame, to the spectral loss. "-d" variants start from the first pass of
# tools/gpu_small_backbones.sh (carried in .carry/h3/init), the others from scratch.
#
#     bash tools/gpu_distill_backbones.sh $OUT SECONDS "flute violin trumpet cello" [VARIANTS]
set -u
OUT=${1:?out dir}
T=${2:-450}
INSTS=${3:-"flute violin trumpet cello"}
INIT=${INIT:-.carry/h3/init}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD OMP_NUM_THREADS=1
mkdir -p work/models work/runs work/logs "$OUT"
COMMON="--steps 1000000 --time-limit $T --batch 16 --crop 256 --ckpt-every 100000 --log-every 10 --amp-bias -2 --noise-warmup 400"
NAMES=${4:-"gru64-d gru96-t attention48-d attention32-d"}
for inst in $INSTS; do
    if [ "$inst" = clarinet ]; then
        DATA="data/clarinet-rec --features 9 --tilt 0.3 --velocity-dropout 0.5 --log-weight 2"
        TG=models/clarinet; TA=models/clarinet
    else DATA="data/$inst"; TG=models/$inst-gru; TA=models/$inst-attention; fi
    declare -A VAR=(
      [gru64-d]="--init $INIT/$inst-gru64 --teacher $TG --lr 5e-4 --lr-final 3e-5"
      [gru96-t]="--backbone gru --backbone-kw {\"hidden\":96,\"layers\":1} --pre-dim 64 --teacher $TG --lr 1e-3 --lr-final 5e-5"
      [gru64-t]="--backbone gru --backbone-kw {\"hidden\":64,\"layers\":1} --pre-dim 64 --teacher $TG --lr 1e-3 --lr-final 5e-5"
      [attention48-d]="--init $INIT/$inst-attention48 --teacher $TA --lr 5e-4 --lr-final 3e-5"
      [attention32-d]="--init $INIT/$inst-attention32 --teacher $TA --lr 5e-4 --lr-final 3e-5"
    )
    for v in $NAMES; do
        n=$inst-$v
        echo "rtsynth train $DATA -o work/models/$n --run-dir work/runs/$n $COMMON ${VAR[$v]}" > work/logs/$n.cmd
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
