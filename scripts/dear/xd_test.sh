#!/bin/bash
# DeAR cross-dataset, evaluating the ImageNet model on DATASET: bash scripts/dear/xd_test.sh DATASET SEED [CFG]
# TASK CD: with FUSION mmrl, the target's (unseen) classes are scored by the CLS path (MMRL's rule).
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
CFG=${3:-vit_b16_cross_datasets}
xd_test DeAR "${CFG}" "$1" "$2" TASK CD \
    TRAINER.DEAR.ROLE_MAP "$(xd_dir train DeAR "${CFG}" imagenet "$2")/role_map.json"
