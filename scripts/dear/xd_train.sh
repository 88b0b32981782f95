#!/bin/bash
# DeAR cross-dataset, training on ImageNet (all classes, 16 shots): bash scripts/dear/xd_train.sh SEED [CFG] [KEY VALUE ...]
# KEY VALUE ...: config options for train.py, after the script's own (they win), e.g. OPTIM.MAX_EPOCH 5.
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
SEED=$1
shift
script_args DeAR vit_b16_cross_datasets "$@"
xd_train DeAR "${CFG}" "${SEED}" TASK CD "${OPTS[@]}"
