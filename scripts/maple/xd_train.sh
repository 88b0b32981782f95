#!/bin/bash
# MaPLe cross-dataset, training on all ImageNet classes (SHOTS, default 16 shots): bash scripts/maple/xd_train.sh SEED [CFG]
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
xd_train MaPLe "${2:-vit_b16_c2_ep5_batch4_2ctx_cross_datasets}" "$1"
