#!/bin/bash
# DeAR vs zero-shot CLIP vs CoOp, base-to-new on an attribute-world dataset with the tiny-attr CLIP:
# bash scripts/dear/tiny_attr_base2new.sh DATASET SEED [DeAR KEY VALUE ...]   (e.g. attr_color_shape 1)
# The dataset is generated under DATA on first use; runs land in the shared base-to-new tree, so
# `python tools/compare.py output/` tabulates them. Extra KEY VALUE pairs go to DeAR's training
# and evaluation; give such a variant its own folder name with DEAR_TAG.
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
DATASET=$1
SEED=$2
shift 2
check_opts "$@"
DEAR_CFG=tiny_ep10_batch4
DEAR_TAG=${DEAR_TAG:-${DEAR_CFG}}

base2new_zeroshot ZeroshotCLIP tiny "${DATASET}" "${SEED}"
base2new_train CoOp tiny_ep10 "${DATASET}" "${SEED}"
base2new_test CoOp tiny_ep10 "${DATASET}" "${SEED}"

DEAR_DIR=$(base2new_dir train_base DeAR "${DEAR_TAG}" "${DATASET}" "${SEED}")
run_job "${DEAR_DIR}" --seed "${SEED}" --trainer DeAR \
    --dataset-config-file "configs/datasets/${DATASET}.yaml" --config-file "configs/trainers/DeAR/${DEAR_CFG}.yaml" \
    DATASET.NUM_SHOTS "${SHOTS}" DATASET.SUBSAMPLE_CLASSES base "${OPTS[@]}"
run_job "$(base2new_dir test_new DeAR "${DEAR_TAG}" "${DATASET}" "${SEED}")" --seed "${SEED}" --trainer DeAR \
    --dataset-config-file "configs/datasets/${DATASET}.yaml" --config-file "configs/trainers/DeAR/${DEAR_CFG}.yaml" \
    --model-dir "${DEAR_DIR}" --load-epoch "$(trained_epoch "${DEAR_DIR}" "configs/trainers/DeAR/${DEAR_CFG}.yaml")" --eval-only \
    DATASET.NUM_SHOTS "${SHOTS}" DATASET.SUBSAMPLE_CLASSES new TRAINER.DEAR.ROLE_MAP "${DEAR_DIR}/role_map.json" "${OPTS[@]}"
