#!/bin/bash
# MMRL cross-dataset, training on ImageNet (all classes, 16 shots): bash scripts/mmrl/xd_train.sh SEED [CFG]
# As the official script: REG_WEIGHT 0.2 on the command line (over the ImageNet setting 0.5).
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
xd_train MMRL "${2:-vit_b16_cross_datasets}" "$1" TASK CD TRAINER.MMRL.REG_WEIGHT 0.2
