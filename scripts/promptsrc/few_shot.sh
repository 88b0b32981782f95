#!/bin/bash
# PromptSRC few-shot on all classes: bash scripts/promptsrc/few_shot.sh DATASET SEED [CFG]
# Shots: SHOTS_LIST (default "1 2 4 8 16"). GPA follows the paper per dataset: MEAN 45 / STD 5 for
# the fine-grained and specialised sets below, the config's MEAN 30 / STD 30 for the others.
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
CFG=${3:-vit_b16_c2_ep50_batch4_4+4ctx_few_shot}
case "$1" in
    stanford_cars | oxford_flowers | fgvc_aircraft | dtd | eurosat) GPA=(TRAINER.PROMPTSRC.GPA_MEAN 45 TRAINER.PROMPTSRC.GPA_STD 5) ;;
    *) GPA=() ;;
esac
for SHOTS in ${SHOTS_LIST:-1 2 4 8 16}; do
    few_shot PromptSRC "${CFG}" "$1" "$2" "${GPA[@]}"
done
