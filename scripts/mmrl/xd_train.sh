#!/bin/bash
# MMRL cross-dataset, training on ImageNet (all classes, 16 shots): bash scripts/mmrl/xd_train.sh SEED [CFG] [KEY VALUE ...]
# As the official script: REG_WEIGHT 0.2 on the command line (over the ImageNet setting 0.5).
# KEY VALUE ...: config options for train.py, after the script's own (they win), e.g. OPTIM.MAX_EPOCH 5.
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
SEED=$1
shift
script_args MMRL vit_b16_cross_datasets "$@"
xd_train MMRL "${CFG}" "${SEED}" TASK CD TRAINER.MMRL.REG_WEIGHT 0.2 "${OPTS[@]}"
