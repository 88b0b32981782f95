#!/bin/bash
# Zero-shot CLIP on the base and the new classes: bash scripts/zsclip/base2new.sh DATASET SEED [CFG]
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
base2new_zeroshot ZeroshotCLIP "${3:-vit_b16}" "$1" "$2"
