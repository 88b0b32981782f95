#!/bin/bash
# CoCoOp cross-dataset, training on all ImageNet classes (SHOTS, default 16 shots): bash scripts/cocoop/xd_train.sh SEED [CFG]
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
xd_train CoCoOp "${2:-vit_b16_c4_ep10_batch1_ctxv1}" "$1"
