#!/bin/bash
# Zero-shot CLIP: bash scripts/zsclip/zeroshot.sh DATASET CFG [KEY VALUE ...]   (CFG: rn50, rn101, vit_b32 or vit_b16)
# KEY VALUE ...: config options for train.py, after the script's own (they win), e.g. DATALOADER.TEST.BATCH_SIZE 50.
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh

TRAINER=ZeroshotCLIP
DATASET=$1
CFG=$2
shift 2
check_opts "$@"

run_job "output/${TRAINER}/${CFG}/${DATASET}" \
    --trainer "${TRAINER}" \
    --dataset-config-file "configs/datasets/${DATASET}.yaml" \
    --config-file "configs/trainers/CoOp/${CFG}.yaml" \
    --eval-only "${OPTS[@]}"
