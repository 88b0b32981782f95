#!/bin/bash
# Zero-shot CLIP on the base and the new classes: bash scripts/zsclip/base2new.sh DATASET SEED [CFG] [KEY VALUE ...]
# KEY VALUE ...: config options for train.py, after the script's own (they win), e.g. OPTIM.MAX_EPOCH 5.
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
DATASET=$1
SEED=$2
shift 2
script_args ZeroshotCLIP vit_b16 "$@"
base2new_zeroshot ZeroshotCLIP "${CFG}" "${DATASET}" "${SEED}" "${OPTS[@]}"
