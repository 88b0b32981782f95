#!/bin/bash
# MMRL few-shot on all classes: bash scripts/mmrl/few_shot.sh DATASET SEED [CFG] [KEY VALUE ...]
# Shots: SHOTS_LIST (default "1 2 4 8 16"); CFG defaults to vit_b16_few_shot (vit_b16_imagenet for imagenet).
# KEY VALUE ...: config options for train.py, after the script's own (they win), e.g. OPTIM.MAX_EPOCH 5.
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
DATASET=$1
SEED=$2
shift 2
script_args MMRL "$(imagenet_or "${DATASET}" vit_b16_few_shot)" "$@"
for SHOTS in ${SHOTS_LIST:-1 2 4 8 16}; do
    few_shot MMRL "${CFG}" "${DATASET}" "${SEED}" TASK FS "${OPTS[@]}"
done
