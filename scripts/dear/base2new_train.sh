#!/bin/bash
# DeAR base-to-new, training on the base classes: bash scripts/dear/base2new_train.sh DATASET SEED [CFG]
# CFG defaults to vit_b16 (vit_b16_imagenet for imagenet). With ROLE_MAP global (the default) the
# backbone's head analysis (ImageNet val images) runs on first use and is cached in the user cache.
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
DATASET=$1
SEED=$2
CFG=${3:-$([ "${DATASET}" = imagenet ] && echo vit_b16_imagenet || echo vit_b16)}
base2new_train DeAR "${CFG}" "${DATASET}" "${SEED}"
