#!/bin/bash
# DeAR few-shot on all classes: bash scripts/dear/few_shot.sh DATASET SEED [CFG]
# Shots: SHOTS_LIST (default "1 2 4 8 16"); CFG defaults to vit_b16_few_shot (vit_b16_imagenet for imagenet).
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
DATASET=$1
SEED=$2
CFG=${3:-$([ "${DATASET}" = imagenet ] && echo vit_b16_imagenet || echo vit_b16_few_shot)}
for SHOTS in ${SHOTS_LIST:-1 2 4 8 16}; do
    few_shot DeAR "${CFG}" "${DATASET}" "${SEED}" TASK FS
done
