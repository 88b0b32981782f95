#!/bin/bash
# MMRL base-to-new, the base-trained model (last epoch of CFG) on the new classes, scored by the
# class features alone (TASK B2N): bash scripts/mmrl/base2new_test.sh DATASET SEED [CFG]
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
CFG=${3:-$([ "$1" = imagenet ] && echo vit_b16_imagenet || echo vit_b16)}
base2new_test MMRL "${CFG}" "$1" "$2" TASK B2N
