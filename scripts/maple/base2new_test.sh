#!/bin/bash
# MaPLe base-to-new, the base-trained model (last epoch of its run) on the new classes:
#   bash scripts/maple/base2new_test.sh DATASET SEED [CFG] [KEY VALUE ...]
# KEY VALUE ...: config options for train.py, after the script's own (they win), e.g. OPTIM.MAX_EPOCH 5.
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
DATASET=$1
SEED=$2
shift 2
script_args MaPLe "vit_b16_c2_ep5_batch4_2ctx" "$@"
base2new_test MaPLe "${CFG}" "${DATASET}" "${SEED}" "${OPTS[@]}"
