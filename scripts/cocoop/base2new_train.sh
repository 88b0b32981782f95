#!/bin/bash
# CoCoOp base-to-new, training on the base classes: bash scripts/cocoop/base2new_train.sh DATASET SEED [CFG]
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
base2new_train CoCoOp "${3:-vit_b16_c4_ep10_batch1_ctxv1}" "$1" "$2"
