#!/bin/bash
# CoOp base-to-new, training on the base classes:
#   bash scripts/coop/base2new_train.sh DATASET SEED [CFG] [KEY VALUE ...]
# KEY VALUE ...: config options for train.py, after the script's own (they win), e.g. OPTIM.MAX_EPOCH 5.
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
DATASET=$1
SEED=$2
shift 2
script_args CoOp "vit_b16_ep50_ctxv1" "$@"
base2new_train CoOp "${CFG}" "${DATASET}" "${SEED}" "${OPTS[@]}"
