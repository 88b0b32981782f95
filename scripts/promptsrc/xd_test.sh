#!/bin/bash
# PromptSRC cross-dataset/domain, the ImageNet model (last epoch of its run) on DATASET:
#   bash scripts/promptsrc/xd_test.sh DATASET SEED [CFG] [KEY VALUE ...]
# KEY VALUE ...: config options for train.py, after the script's own (they win), e.g. OPTIM.MAX_EPOCH 5.
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
DATASET=$1
SEED=$2
shift 2
script_args PromptSRC "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets" "$@"
xd_test PromptSRC "${CFG}" "${DATASET}" "${SEED}" "${OPTS[@]}"
