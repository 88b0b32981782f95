#!/bin/bash
# PromptSRC cross-dataset/domain, the ImageNet model (last epoch of CFG) on DATASET: bash scripts/promptsrc/xd_test.sh DATASET SEED [CFG]
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
xd_test PromptSRC "${3:-vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets}" "$1" "$2"
