#!/bin/bash
# PromptSRC few-shot on all classes: bash scripts/promptsrc/few_shot.sh DATASET SEED [CFG] [KEY VALUE ...]
# Shots: SHOTS_LIST (default "1 2 4 8 16"). GPA follows the paper per dataset: MEAN 45 / STD 5 for
# the fine-grained and specialised sets below, the config's MEAN 30 / STD 30 for the others.
# KEY VALUE ...: config options for train.py, after the script's own (they win), e.g. OPTIM.MAX_EPOCH 5.
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
DATASET=$1
SEED=$2
shift 2
script_args PromptSRC vit_b16_c2_ep50_batch4_4+4ctx_few_shot "$@"
case "${DATASET}" in
    stanford_cars | oxford_flowers | fgvc_aircraft | dtd | eurosat) GPA=(TRAINER.PROMPTSRC.GPA_MEAN 45 TRAINER.PROMPTSRC.GPA_STD 5) ;;
    *) GPA=() ;;
esac
for SHOTS in ${SHOTS_LIST:-1 2 4 8 16}; do
    few_shot PromptSRC "${CFG}" "${DATASET}" "${SEED}" "${GPA[@]}" "${OPTS[@]}"
done
