#!/bin/bash
# Evaluate CoOp models trained on ImageNet (16 shots) on DATASET, seeds 1-3:
# bash scripts/coop/eval.sh DATASET CFG [KEY VALUE ...]   (loads the last epoch of CFG, read from its yaml)
# KEY VALUE ...: config options for train.py, after the script's own (they win), e.g. DATALOADER.TEST.BATCH_SIZE 50.
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh

TRAINER=CoOp
SHOTS=16
NCTX=16
CSC=False
CTP=end
DATASET=$1
CFG=$2
shift 2
check_opts "$@"
LOAD_EPOCH=$(max_epoch "configs/trainers/${TRAINER}/${CFG}.yaml")

for SEED in ${SEEDS:-1 2 3}; do
    run_job "output/evaluation/${TRAINER}/${CFG}_${SHOTS}shots/nctx${NCTX}_csc${CSC}_ctp${CTP}/${DATASET}/seed${SEED}" \
        --seed "${SEED}" \
        --trainer "${TRAINER}" \
        --dataset-config-file "configs/datasets/${DATASET}.yaml" \
        --config-file "configs/trainers/${TRAINER}/${CFG}.yaml" \
        --model-dir "output/imagenet/${TRAINER}/${CFG}_${SHOTS}shots/nctx${NCTX}_csc${CSC}_ctp${CTP}/seed${SEED}" \
        --load-epoch "${LOAD_EPOCH}" \
        --eval-only \
        TRAINER.COOP.N_CTX "${NCTX}" \
        TRAINER.COOP.CSC "${CSC}" \
        TRAINER.COOP.CLASS_TOKEN_POSITION "${CTP}" \
        "${OPTS[@]}"
done
