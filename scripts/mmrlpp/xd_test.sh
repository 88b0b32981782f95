#!/bin/bash
# MMRL++ cross-dataset/domain, the ImageNet model (last epoch of CFG) on DATASET, scored by the class
# features alone (TASK CD): bash scripts/mmrlpp/xd_test.sh DATASET SEED [CFG]
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
xd_test MMRLpp "${3:-vit_b16_cross_datasets}" "$1" "$2" TASK CD
