#!/bin/bash
# MMRL cross-dataset/domain, the ImageNet model (last epoch of CFG) on DATASET, scored by the class
# features alone (TASK CD): bash scripts/mmrl/xd_test.sh DATASET SEED [CFG]
# As the official script: REP_DIM 512 as trained (the EuroSAT setting 2048 would not load the weights).
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
xd_test MMRL "${3:-vit_b16_cross_datasets}" "$1" "$2" TASK CD TRAINER.MMRL.REG_WEIGHT 0.2 TRAINER.MMRL.REP_DIM 512
