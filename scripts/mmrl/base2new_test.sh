#!/bin/bash
# MMRL base-to-new, the base-trained model (last epoch of its run) on the new classes, scored by the
# class features alone (TASK B2N): bash scripts/mmrl/base2new_test.sh DATASET SEED [CFG] [KEY VALUE ...]
# KEY VALUE ...: config options for train.py, after the script's own (they win), e.g. OPTIM.MAX_EPOCH 5.
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
DATASET=$1
SEED=$2
shift 2
script_args MMRL "$(imagenet_or "${DATASET}" vit_b16)" "$@"
base2new_test MMRL "${CFG}" "${DATASET}" "${SEED}" TASK B2N "${OPTS[@]}"
