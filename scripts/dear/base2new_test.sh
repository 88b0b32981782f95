#!/bin/bash
# DeAR base-to-new, evaluating the base-trained model on the new classes:
# bash scripts/dear/base2new_test.sh DATASET SEED [CFG]
# Loads the last epoch of CFG (read from its yaml) and the role map the model was trained with.
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
DATASET=$1
SEED=$2
CFG=${3:-$([ "${DATASET}" = imagenet ] && echo vit_b16_imagenet || echo vit_b16)}
base2new_test DeAR "${CFG}" "${DATASET}" "${SEED}" \
    TRAINER.DEAR.ROLE_MAP "$(base2new_dir train_base DeAR "${CFG}" "${DATASET}" "${SEED}")/role_map.json"
