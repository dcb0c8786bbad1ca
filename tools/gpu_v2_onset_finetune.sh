#!/bin/bash
# Fine-tunes of the contract-v2 clarinet and morph with the attack (--onset-weight) and level
# (--level-weight) terms, all at once on one GPU (issue 12 items 1, 5, 6), after the recordings'
# calibration fix (rtsynth.data.calibrate). Datasets carried as in tools/gpu_v2_clarinet_morph.sh
# (.carry/instrB/data.tar.xz):
#
#     bash tools/gpu_v2_onset_finetune.sh $OUT [SECONDS]
#
# The morph runs through tools/finetune_morph.py (its timbre latents held at the shipped anchors).
# Trained models come back as $OUT/NAME.tar (model folder + log.jsonl). Session 8 ran it with
# models/clarinet-v2 (now models/clarinet) and models/clarinet (now models/clarinet-v1); the
# names below are the folders now.
set -u
OUT=${1:?out dir}
T=${2:-170}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD OMP_NUM_THREADS=1
if [ -f .carry/instrB/data.tar.xz ]; then
    xz -T4 -dc .carry/instrB/data.tar.xz | tar xf - -C /tmp
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
TRAIN="-m rtsynth.train.cli"
declare -A JOBS=(
  [clarinet-v2-ft]="$TRAIN data/clarinet-rec $V2 --init models/clarinet --lr 3e-4 --lr-final 3e-5 --log-weight 2 --onset-weight 1 --level-weight 1"
  [clarinet-v2-v1]="$TRAIN data/clarinet-rec $V2 --init models/clarinet-v1 --lr 5e-4 --lr-final 3e-5 --log-weight 2 --onset-weight 1 --level-weight 1"
  [morph-ft1]="tools/finetune_morph.py $MORPH $V2 --init models/morph --lr 2e-4 --lr-final 2e-5 --log-weight 2 --onset-weight 1"
  [morph-ft3]="tools/finetune_morph.py $MORPH $V2 --init models/morph --lr 2e-4 --lr-final 2e-5 --log-weight 2 --onset-weight 3"
)
for n in "${!JOBS[@]}"; do
    echo "python ${JOBS[$n]} -o work/models/$n --run-dir work/runs/$n $COMMON" | tee work/logs/$n.cmd
    python3 ${JOBS[$n]} -o work/models/$n --run-dir work/runs/$n $COMMON > work/logs/$n.log 2>&1 &
done
wait
for n in "${!JOBS[@]}"; do
    tail -2 work/logs/$n.log
    tail -1 work/runs/$n/log.jsonl
    tar cf "$OUT/$n.tar" -C work models/$n runs/$n/log.jsonl logs/$n.log logs/$n.cmd
done
nvidia-smi --query-gpu=name,memory.used --format=csv
