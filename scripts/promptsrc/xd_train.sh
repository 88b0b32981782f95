#!/bin/bash
# PromptSRC cross-dataset, training on all ImageNet classes (SHOTS, default 16 shots):
#   bash scripts/promptsrc/xd_train.sh SEED [CFG] [KEY VALUE ...]
# KEY VALUE ...: config options for train.py, after the script's own (they win), e.g. OPTIM.MAX_EPOCH 5.
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
SEED=$1
shift
script_args PromptSRC "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets" "$@"
xd_train PromptSRC "${CFG}" "${SEED}" "${OPTS[@]}"
