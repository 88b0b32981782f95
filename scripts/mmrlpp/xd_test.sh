#!/bin/bash
# MMRL++ cross-dataset/domain, the ImageNet model (last epoch of its run) on DATASET, scored by the class
# features alone (TASK CD): bash scripts/mmrlpp/xd_test.sh DATASET SEED [CFG] [KEY VALUE ...]
# KEY VALUE ...: config options for train.py, after the script's own (they win), e.g. OPTIM.MAX_EPOCH 5.
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
DATASET=$1
SEED=$2
shift 2
script_args MMRLpp vit_b16_cross_datasets "$@"
xd_test MMRLpp "${CFG}" "${DATASET}" "${SEED}" TASK CD "${OPTS[@]}"
