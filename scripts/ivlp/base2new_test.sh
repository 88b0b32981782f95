#!/bin/bash
# IVLP base-to-new, the base-trained model (last epoch of CFG) on the new classes: bash scripts/ivlp/base2new_test.sh DATASET SEED [CFG]
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
base2new_test IVLP "${3:-vit_b16_c2_ep5_batch4_2+2ctx}" "$1" "$2"
