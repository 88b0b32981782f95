#!/bin/bash
# CoOp base-to-new (test on the new classes): bash scripts/coop/base2new_test.sh DATASET SEED [CFG]
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
base2new_test CoOp "${3:-vit_b16_ep50_ctxv1}" "$1" "$2"
