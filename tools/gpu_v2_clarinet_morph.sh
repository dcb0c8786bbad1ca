#!/bin/bash
# Contract-v2 clarinet (from recordings) and morph trainings on the GPU machine, one process per
# model, all at once on one GPU (issue 12 item 6). Run from the repository root with the
# datasets carried as .carry/instrB/data.tar.xz (data/{flute,violin,trumpet,cello,clarinet-rec},
# audio.npz members unpacked, xz: the npz files alone are over the call's size limit):
#
#     bash tools/gpu_v2_clarinet_morph.sh $OUT [SECONDS]
#
# (The clarinet starts from the v1 clarinet: models/clarinet when it ran, models/clarinet-v1 now.)
#
# Trained models come back as $OUT/NAME.tar (model folder + log.jsonl).
set -u
OUT=${1:?out dir}
T=${2:-420}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD OMP_NUM_THREADS=1
if [ -f .carry/instrB/data.tar.xz ]; then
    xz -dc .carry/instrB/data.tar.xz | tar xf - -C /tmp
    for d in /tmp/data/*/; do
        n=$(basename "$d"); mkdir -p data/$n; cp "$d/index.json" data/$n/
        python3 - "$d" data/$n/audio.npz <<'EOF'
import sys, zipfile, pathlib
src, dst = pathlib.Path(sys.argv[1]) / "audio", sys.argv[2]
with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as z:
    for f in sorted(src.iterdir()):
        z.write(f, f.name)
EOF
    done
fi
mkdir -p work/models work/runs work/logs "$OUT"
V2="--features 9 --tilt 0.3 --velocity-dropout 0.5"
COMMON="--steps 1000000 --time-limit $T --batch 16 --crop 256 --ckpt-every 100000 --log-every 10"
MORPH="data/flute data/violin data/trumpet data/cello"
declare -A JOBS=(
  [clarinet-v2-lite]="data/clarinet-rec $V2 --init models/clarinet-lite --lr 5e-4 --lr-final 3e-5 --log-weight 2"
  [clarinet-v2-gru]="data/clarinet-rec $V2 --init models/clarinet-v1 --lr 5e-4 --lr-final 3e-5 --log-weight 2"
  [morph-v2-init]="$MORPH $V2 --vae --init models/morph --lr 5e-4 --lr-final 3e-5 --log-weight 2"
  [morph-v2]="$MORPH $V2 --vae --backbone cnn --lr 1e-3 --amp-bias -2 --noise-warmup 400 --log-weight 2"
)
for n in "${!JOBS[@]}"; do
    echo "rtsynth train ${JOBS[$n]} -o work/models/$n --run-dir work/runs/$n $COMMON" | tee work/logs/$n.cmd
    python3 -m rtsynth.train.cli ${JOBS[$n]} -o work/models/$n --run-dir work/runs/$n $COMMON \
        > work/logs/$n.log 2>&1 &
done
wait
for n in "${!JOBS[@]}"; do
    tail -2 work/logs/$n.log
    tail -1 work/runs/$n/log.jsonl
    tar cf "$OUT/$n.tar" -C work models/$n runs/$n/log.jsonl logs/$n.log logs/$n.cmd
done
nvidia-smi --query-gpu=name,memory.used --format=csv
