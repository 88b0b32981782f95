#!/bin/bash
# MaPLe cross-dataset/domain, the ImageNet model (last epoch of CFG) on DATASET: bash scripts/maple/xd_test.sh DATASET SEED [CFG]
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
xd_test MaPLe "${3:-vit_b16_c2_ep5_batch4_2ctx_cross_datasets}" "$1" "$2"
