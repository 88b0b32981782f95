#!/bin/bash
# Base-to-new on the attribute world with the tiny-attr CLIP: zero-shot CLIP and CoOp,
# then the Base / New / HM table. Offline, CPU, a few minutes on 2 cores.
#   bash scripts/quickstart.sh [DATASET] [SEEDS]     e.g. bash scripts/quickstart.sh attr_hue_shift "1 2 3"
# The dataset is generated under $DATA (default ./data) on first use.
set -e
cd "$(dirname "$0")/.."
source scripts/common.sh
DATASET=${1:-attr_hue_shift}
for SEED in ${2:-1}; do
    base2new_zeroshot ZeroshotCLIP tiny "${DATASET}" "${SEED}"
    base2new_train CoOp tiny_ep10 "${DATASET}" "${SEED}"
    base2new_test CoOp tiny_ep10 "${DATASET}" "${SEED}"
done
"${PYTHON}" tools/compare.py output/
