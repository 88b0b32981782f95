#!/bin/bash
# MMRL base-to-new, training on the base classes: bash scripts/mmrl/base2new_train.sh DATASET SEED [CFG]
# CFG defaults to vit_b16 (vit_b16_imagenet for imagenet); the official per-dataset settings apply.
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
CFG=${3:-$([ "$1" = imagenet ] && echo vit_b16_imagenet || echo vit_b16)}
base2new_train MMRL "${CFG}" "$1" "$2" TASK B2N
