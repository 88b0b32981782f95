#!/bin/bash
# MMRL cross-dataset/domain, the ImageNet model (last epoch of its run) on DATASET, scored by the class
# features alone (TASK CD): bash scripts/mmrl/xd_test.sh DATASET SEED [CFG] [KEY VALUE ...]
# As the official script: REP_DIM 512 as trained (the EuroSAT setting 2048 would not load the weights).
# KEY VALUE ...: config options for train.py, after the script's own (they win), e.g. OPTIM.MAX_EPOCH 5.
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
DATASET=$1
SEED=$2
shift 2
script_args MMRL vit_b16_cross_datasets "$@"
xd_test MMRL "${CFG}" "${DATASET}" "${SEED}" TASK CD TRAINER.MMRL.REG_WEIGHT 0.2 TRAINER.MMRL.REP_DIM 512 "${OPTS[@]}"
