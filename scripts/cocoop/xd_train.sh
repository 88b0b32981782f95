#!/bin/bash
# CoCoOp cross-dataset, training on all ImageNet classes (SHOTS, default 16 shots):
#   bash scripts/cocoop/xd_train.sh SEED [CFG] [KEY VALUE ...]
# KEY VALUE ...: config options for train.py, after the script's own (they win), e.g. OPTIM.MAX_EPOCH 5.
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
SEED=$1
shift
script_args CoCoOp "vit_b16_c4_ep10_batch1_ctxv1" "$@"
xd_train CoCoOp "${CFG}" "${SEED}" "${OPTS[@]}"
