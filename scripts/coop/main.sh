#!/bin/bash
# Few-shot CoOp, seeds 1-3: bash scripts/coop/main.sh DATASET CFG CTP NCTX SHOTS CSC [KEY VALUE ...]
# e.g. bash scripts/coop/main.sh caltech101 vit_b16_ep50 end 16 1 False
# KEY VALUE ...: config options for train.py, after the script's own (they win), e.g. OPTIM.MAX_EPOCH 5.
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh

TRAINER=CoOp
DATASET=$1
CFG=$2    # config file under configs/trainers/CoOp
CTP=$3    # class token position (end, middle or front)
NCTX=$4   # number of context tokens
SHOTS=$5  # number of shots (1, 2, 4, 8, 16)
CSC=$6    # class-specific context (False or True)
shift 6
check_opts "$@"

for SEED in ${SEEDS:-1 2 3}; do
    run_job "output/${DATASET}/${TRAINER}/${CFG}_${SHOTS}shots/nctx${NCTX}_csc${CSC}_ctp${CTP}/seed${SEED}" \
        --seed "${SEED}" \
        --trainer "${TRAINER}" \
        --dataset-config-file "configs/datasets/${DATASET}.yaml" \
        --config-file "configs/trainers/${TRAINER}/${CFG}.yaml" \
        TRAINER.COOP.N_CTX "${NCTX}" \
        TRAINER.COOP.CSC "${CSC}" \
        TRAINER.COOP.CLASS_TOKEN_POSITION "${CTP}" \
        DATASET.NUM_SHOTS "${SHOTS}" \
        "${OPTS[@]}"
done
