#!/bin/bash
# MMRL++ base-to-new, training on the base classes: bash scripts/mmrlpp/base2new_train.sh DATASET SEED [CFG] [KEY VALUE ...]
# CFG defaults to vit_b16 (vit_b16_imagenet for imagenet); the official per-dataset settings apply.
# KEY VALUE ...: config options for train.py, after the script's own (they win), e.g. OPTIM.MAX_EPOCH 5.
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
DATASET=$1
SEED=$2
shift 2
script_args MMRLpp "$(imagenet_or "${DATASET}" vit_b16)" "$@"
base2new_train MMRLpp "${CFG}" "${DATASET}" "${SEED}" TASK B2N "${OPTS[@]}"
