#!/bin/bash
# IVLP cross-dataset/domain, the ImageNet model (last epoch of its run) on DATASET:
#   bash scripts/ivlp/xd_test.sh DATASET SEED [CFG] [KEY VALUE ...]
# KEY VALUE ...: config options for train.py, after the script's own (they win), e.g. OPTIM.MAX_EPOCH 5.
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
DATASET=$1
SEED=$2
shift 2
script_args IVLP "vit_b16_c2_ep5_batch4_2+2ctx" "$@"
xd_test IVLP "${CFG}" "${DATASET}" "${SEED}" "${OPTS[@]}"
