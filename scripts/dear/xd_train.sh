#!/bin/bash
# DeAR cross-dataset, training on ImageNet (all classes, 16 shots): bash scripts/dear/xd_train.sh SEED [CFG]
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
xd_train DeAR "${2:-vit_b16_cross_datasets}" "$1" TASK CD
