#!/bin/bash
# MMRL++ few-shot on all classes: bash scripts/mmrlpp/few_shot.sh DATASET SEED [CFG]
# Shots: SHOTS_LIST (default "1 2 4 8 16"); CFG defaults to vit_b16_few_shot (vit_b16_imagenet for imagenet).
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
CFG=${3:-$([ "$1" = imagenet ] && echo vit_b16_imagenet || echo vit_b16_few_shot)}
for SHOTS in ${SHOTS_LIST:-1 2 4 8 16}; do
    few_shot MMRLpp "${CFG}" "$1" "$2" TASK FS
done
