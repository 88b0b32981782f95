#!/bin/bash
# CoCoOp base-to-new, the base-trained model (last epoch of CFG) on the new classes: bash scripts/cocoop/base2new_test.sh DATASET SEED [CFG]
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
base2new_test CoCoOp "${3:-vit_b16_c4_ep10_batch1_ctxv1}" "$1" "$2"
