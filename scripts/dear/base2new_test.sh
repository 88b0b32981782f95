#!/bin/bash
# DeAR base-to-new, evaluating the base-trained model on the new classes:
#   bash scripts/dear/base2new_test.sh DATASET SEED [CFG] [KEY VALUE ...]
# Loads the last epoch of the training run (from its results.json) and the role map the model was
# trained with (the run's role_map.json), then prints the pair's Base / New / HM.
# KEY VALUE ...: config options for train.py, after the script's own (they win), e.g. OPTIM.MAX_EPOCH 5.
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
DATASET=$1
SEED=$2
shift 2
script_args DeAR "$(imagenet_or "${DATASET}" vit_b16)" "$@"
base2new_test DeAR "${CFG}" "${DATASET}" "${SEED}" \
    TRAINER.DEAR.ROLE_MAP "$(base2new_dir train_base DeAR "${CFG}" "${DATASET}" "${SEED}")/role_map.json" "${OPTS[@]}"
