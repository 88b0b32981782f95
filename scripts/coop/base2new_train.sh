#!/bin/bash
# CoOp base-to-new (train on the base classes): bash scripts/coop/base2new_train.sh DATASET SEED [CFG]
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
base2new_train CoOp "${3:-vit_b16_ep50_ctxv1}" "$1" "$2"
