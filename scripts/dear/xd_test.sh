#!/bin/bash
# DeAR cross-dataset, evaluating the ImageNet model on DATASET: bash scripts/dear/xd_test.sh DATASET SEED [CFG]
# The target's classes are unseen: with FUSION mmrl, EVAL_ON target scores them by the CLS path.
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
CFG=${3:-vit_b16_cross_datasets}
xd_test DeAR "${CFG}" "$1" "$2" TRAINER.DEAR.EVAL_ON target \
    TRAINER.DEAR.ROLE_MAP "$(xd_dir train DeAR "${CFG}" imagenet "$2")/role_map.json"
