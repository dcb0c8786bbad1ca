#!/bin/bash
# Issue 16 item 4, session 10: longer distillation of the small GRUs (continue the shipped
# INST-gru64 from their weights with the teacher, --level-weight 1 for the loudness error the
# SoundFont ones missed) and a mid-size GRU-128 clarinet distilled from scratch, all at once on one GPU, one
# process each. Datasets carried as an xz tarball (.carry/data.tar.xz, made with
# `tar cJf .carry/data.tar.xz data/clarinet-rec data/flute data/violin data/trumpet data/cello`).
#
#     bash tools/gpu_mid_backbones.sh $OUT SECONDS [NAMES]
#
# NAMES: INST-VARIANT from the table below. Each model comes back in $OUT/mid.tar (model
# folders + log.jsonl + the exact command line).
set -u
OUT=${1:?out dir}
T=${2:-450}
NAMES=${3:-"clarinet-gru64-c clarinet-gru128-t clarinet-gru96-t flute-gru64-c violin-gru64-c trumpet-gru64-c cello-gru64-c"}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD OMP_NUM_THREADS=1
[ -d data ] || tar xJf .carry/data.tar.xz  # or carry the data/NAME folders themselves
mkdir -p work/models work/runs work/logs "$OUT"
COMMON="--steps 1000000 --time-limit $T --batch 16 --crop 256 --ckpt-every 100000 --log-every 10 --amp-bias -2 --noise-warmup 400"
files=""
for n in $NAMES; do
    inst=${n%%-*}; v=${n#*-}
    if [ "$inst" = clarinet ]; then
        DATA="data/clarinet-rec --features 9 --tilt 0.3 --velocity-dropout 0.5 --log-weight 2"; TG=models/clarinet; LW=""
    else DATA="data/$inst"; TG=models/$inst-gru; LW="--level-weight 1"; fi
    case $v in
      gru64-c) X="--init models/$inst-gru64 --teacher $TG --lr 3e-4 --lr-final 2e-5 $LW";;
      gru96-t) X="--backbone gru --backbone-kw {\"hidden\":96,\"layers\":1} --pre-dim 64 --teacher $TG --lr 1e-3 --lr-final 3e-5";;
      gru128-t) X="--backbone gru --backbone-kw {\"hidden\":128,\"layers\":1} --pre-dim 64 --teacher $TG --lr 1e-3 --lr-final 3e-5";;
      *) echo "unknown variant $v"; continue;;
    esac
    echo "rtsynth train $DATA -o work/models/$n --run-dir work/runs/$n $COMMON $X" > work/logs/$n.cmd
    python3 -m rtsynth.train.cli $DATA -o work/models/$n --run-dir work/runs/$n $COMMON $X \
        > work/logs/$n.log 2>&1 &
done
sleep 60; nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv
wait
for n in $NAMES; do
    tail -2 work/logs/$n.log; tail -1 work/runs/$n/log.jsonl 2>/dev/null; echo
    for f in models/$n runs/$n/log.jsonl logs/$n.log logs/$n.cmd; do
        [ -e work/$f ] && files="$files $f"
    done
done
tar cf "$OUT/mid.tar" -C work $files
