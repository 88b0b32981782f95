#!/bin/bash
# DeAR base-to-new, training on the base classes: bash scripts/dear/base2new_train.sh DATASET SEED [CFG] [KEY VALUE ...]
# CFG defaults to vit_b16 (vit_b16_imagenet for imagenet). The role map (which heads the attribute
# tokens reach) is, with ROLE_MAP global (the default), the backbone's head analysis on ImageNet's
# validation images, run on first use and cached. Without ImageNet under DATA, give it another
# image folder or a role map (docs/DEAR.md):
#   bash scripts/dear/base2new_train.sh caltech101 1 TRAINER.DEAR.ANALYSIS_IMAGES /path/to/images
#   bash scripts/dear/base2new_train.sh caltech101 1 TRAINER.DEAR.ROLE_MAP roles.json
#   bash scripts/dear/base2new_train.sh caltech101 1 TRAINER.DEAR.ROLE_MAP https://.../roles.json TRAINER.DEAR.ROLE_MAP_SHA256 <hex>
# KEY VALUE ...: config options for train.py, after the script's own (they win), e.g. OPTIM.MAX_EPOCH 5.
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
DATASET=$1
SEED=$2
shift 2
script_args DeAR "$(imagenet_or "${DATASET}" vit_b16)" "$@"
base2new_train DeAR "${CFG}" "${DATASET}" "${SEED}" "${OPTS[@]}"
