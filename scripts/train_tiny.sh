#!/usr/bin/env bash
# Rebuild the embedded default model (weights/tiny) from nothing: data, every training stage,
# the fp16 release. Each step resumes where it stopped, so rerun the script after an
# interruption. See weights/tiny/RECIPE.md for the numbers of the shipped run.
#
#   scripts/train_tiny.sh [RUN_DIR] [APPEARANCE_STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."

RUN=${1:-runs/tiny}
APPEARANCE_STEPS=${2:-6000}
ICP=${ICP:-.venv/bin/icportrait}
DATA=$RUN/data

# Held-out identities for validation come from another seed; the evaluation suites use
# seeds 9000+ (never seen here).
[ -f "$DATA/train/shard-00024.json" ] || \
    $ICP data synth --out "$DATA/train" --identities 400 --views 8 --lights 2 --size 128 --seed 0
[ -f "$DATA/val/shard-00002.json" ] || \
    $ICP data synth --out "$DATA/val" --identities 40 --views 8 --lights 2 --size 128 --seed 1

# Pretrain the tiny spec (VAE, then UNet), so a pretrained diffusion model exists.
[ -f "$RUN/base/unet/pipeline/model_index.json" ] || \
    $ICP train base --data "$DATA/train" --val-data "$DATA/val" --output-dir "$RUN/base" \
        --vae-steps 3000 --steps 6000 --batch-size 4 --lr 2e-4 --checkpoint-every 200 \
        --validate-every 500 --ema-decay 0.999 --resume

# The matching net: 200 steps, denoising loss only (as in the paper).
[ -f "$RUN/matching/pipeline/model_index.json" ] || \
    $ICP train matching --data "$DATA/train" --val-data "$DATA/val" \
        --base "$RUN/base/unet/pipeline" --output-dir "$RUN/matching" --steps 200 \
        --batch-size 8 --lr 1e-4 --checkpoint-every 50 --validate-every 100 --resume

# The appearance net, matching net frozen: cross-view/cross-light pairs and self-pairs.
[ -f "$RUN/appearance/pipeline/model_index.json" ] || \
    $ICP train appearance --data "$DATA/train" --val-data "$DATA/val" \
        --matching "$RUN/matching/pipeline" --output-dir "$RUN/appearance" \
        --steps "$APPEARANCE_STEPS" --batch-size 4 --lr 1e-4 --checkpoint-every 200 \
        --validate-every 1000 --ema-decay 0.999 --resume

$ICP train release --pipeline "$RUN/appearance/pipeline" --out weights/tiny
