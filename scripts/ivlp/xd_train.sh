#!/bin/bash
# IVLP cross-dataset, training on all ImageNet classes (SHOTS, default 16 shots):
#   bash scripts/ivlp/xd_train.sh SEED [CFG] [KEY VALUE ...]
# KEY VALUE ...: config options for train.py, after the script's own (they win), e.g. OPTIM.MAX_EPOCH 5.
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
SEED=$1
shift
script_args IVLP "vit_b16_c2_ep5_batch4_2+2ctx" "$@"
xd_train IVLP "${CFG}" "${SEED}" "${OPTS[@]}"
