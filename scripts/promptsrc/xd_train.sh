#!/bin/bash
# PromptSRC cross-dataset, training on all ImageNet classes (SHOTS, default 16 shots): bash scripts/promptsrc/xd_train.sh SEED [CFG]
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
xd_train PromptSRC "${2:-vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets}" "$1"
