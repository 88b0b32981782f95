#!/bin/bash
# DeAR vs zero-shot CLIP vs CoOp, base-to-new on an attribute-world dataset with the tiny-attr CLIP:
# bash scripts/dear/tiny_attr_base2new.sh DATASET_NAME SEED [DeAR KEY VALUE ...]   (e.g. AttrColorShape 1)
# Extra KEY VALUE pairs go to DeAR only; name such a variant with DEAR_TAG (its CFG folder).
# The dataset is generated under DATA on first use. Runs land in the shared base-to-new tree
# (output/base2new/{train_base,test_new}/DATASET_NAME/shots_16/TRAINER/CFG/seedSEED), so
# `python tools/compare.py output/` tabulates them. CoOp uses its base-to-new recipe
# (vit_b16_ep50_ctxv1) with tiny-attr's input (64 px, no crop/flip) and fp32.
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
NAME=$1
SEED=$2
shift 2
DEAR_TAG=${DEAR_TAG:-tiny_ep10_batch4}
DEAR_CFG=configs/trainers/DeAR/tiny_ep10_batch4.yaml
TINY=(MODEL.BACKBONE.NAME tiny-attr INPUT.SIZE "(64, 64)" INPUT.TRANSFORMS '["normalize"]' DATALOADER.NUM_WORKERS 2)

for SUB in base new; do
    run_job "$(base2new_dir "$([ ${SUB} = base ] && echo train_base || echo test_new)" ZeroshotCLIP tiny "${NAME}" "${SEED}")" \
        --seed "${SEED}" --trainer ZeroshotCLIP --config-file "${DEAR_CFG}" --eval-only \
        DATASET.NAME "${NAME}" DATASET.SUBSAMPLE_CLASSES "${SUB}"
done

COOP_CFG=configs/trainers/CoOp/vit_b16_ep50_ctxv1.yaml
COOP_DIR=$(base2new_dir train_base CoOp tiny_ep50_ctxv1 "${NAME}" "${SEED}")
run_job "${COOP_DIR}" --seed "${SEED}" --trainer CoOp --config-file "${COOP_CFG}" \
    DATASET.NAME "${NAME}" DATASET.NUM_SHOTS "${SHOTS}" DATASET.SUBSAMPLE_CLASSES base "${TINY[@]}" TRAINER.COOP.PREC fp32
run_job "$(base2new_dir test_new CoOp tiny_ep50_ctxv1 "${NAME}" "${SEED}")" --seed "${SEED}" --trainer CoOp \
    --config-file "${COOP_CFG}" --model-dir "${COOP_DIR}" --load-epoch "$(max_epoch "${COOP_CFG}")" --eval-only \
    DATASET.NAME "${NAME}" DATASET.NUM_SHOTS "${SHOTS}" DATASET.SUBSAMPLE_CLASSES new "${TINY[@]}" TRAINER.COOP.PREC fp32

DEAR_DIR=$(base2new_dir train_base DeAR "${DEAR_TAG}" "${NAME}" "${SEED}")
run_job "${DEAR_DIR}" --seed "${SEED}" --trainer DeAR --config-file "${DEAR_CFG}" \
    DATASET.NAME "${NAME}" DATASET.NUM_SHOTS "${SHOTS}" DATASET.SUBSAMPLE_CLASSES base "$@"
run_job "$(base2new_dir test_new DeAR "${DEAR_TAG}" "${NAME}" "${SEED}")" --seed "${SEED}" --trainer DeAR \
    --config-file "${DEAR_CFG}" --model-dir "${DEAR_DIR}" --load-epoch "$(max_epoch "${DEAR_CFG}")" --eval-only \
    DATASET.NAME "${NAME}" DATASET.NUM_SHOTS "${SHOTS}" DATASET.SUBSAMPLE_CLASSES new \
    TRAINER.DEAR.ROLE_MAP "${DEAR_DIR}/role_map.json" "$@"
