#!/bin/bash
# IVLP cross-dataset/domain, the ImageNet model (last epoch of CFG) on DATASET: bash scripts/ivlp/xd_test.sh DATASET SEED [CFG]
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
xd_test IVLP "${3:-vit_b16_c2_ep5_batch4_2+2ctx}" "$1" "$2"
