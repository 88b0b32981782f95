#!/bin/bash
# MaPLe cross-dataset/domain, the ImageNet model (last epoch of its run) on DATASET:
#   bash scripts/maple/xd_test.sh DATASET SEED [CFG] [KEY VALUE ...]
# KEY VALUE ...: config options for train.py, after the script's own (they win), e.g. OPTIM.MAX_EPOCH 5.
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
DATASET=$1
SEED=$2
shift 2
script_args MaPLe "vit_b16_c2_ep5_batch4_2ctx_cross_datasets" "$@"
xd_test MaPLe "${CFG}" "${DATASET}" "${SEED}" "${OPTS[@]}"
