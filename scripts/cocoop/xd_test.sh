#!/bin/bash
# CoCoOp cross-dataset/domain, the ImageNet model (last epoch of CFG) on DATASET: bash scripts/cocoop/xd_test.sh DATASET SEED [CFG]
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
xd_test CoCoOp "${3:-vit_b16_c4_ep10_batch1_ctxv1}" "$1" "$2"
