#!/bin/bash
# DeAR cross-dataset, evaluating the ImageNet model on DATASET: bash scripts/dear/xd_test.sh DATASET SEED [CFG] [KEY VALUE ...]
# TASK CD: with FUSION mmrl, the target's (unseen) classes are scored by the CLS path (MMRL's rule).
# KEY VALUE ...: config options for train.py, after the script's own (they win), e.g. OPTIM.MAX_EPOCH 5.
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
DATASET=$1
SEED=$2
shift 2
script_args DeAR vit_b16_cross_datasets "$@"
xd_test DeAR "${CFG}" "${DATASET}" "${SEED}" TASK CD \
    TRAINER.DEAR.ROLE_MAP "$(xd_dir train DeAR "${CFG}" imagenet "${SEED}")/role_map.json" "${OPTS[@]}"
