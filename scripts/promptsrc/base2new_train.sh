#!/bin/bash
# PromptSRC base-to-new, training on the base classes: bash scripts/promptsrc/base2new_train.sh DATASET SEED [CFG]
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
base2new_train PromptSRC "${3:-vit_b16_c2_ep20_batch4_4+4ctx}" "$1" "$2"
