#!/bin/bash
# The toolbox in about five minutes (2 CPU cores, offline): base-to-new on the attribute world with
# the tiny-attr CLIP: zero-shot CLIP, CoOp and DeAR, then the Base / New / HM table, the comparison
# plot and DeAR's head-role heatmap (the role map its attention masks come from).
#   bash scripts/quickstart.sh [DATASET] [SEEDS]     e.g. bash scripts/quickstart.sh attr_hue_shift "1 2 3"
# The dataset is generated under $DATA (default ./data) on first use; runs go to $OUTPUT (./output).
set -e
cd "$(dirname "$0")/.."
source scripts/common.sh
# One intra-op thread unless told otherwise: tiny-attr's ops are too small for threads to pay, and on
# a busy 2-core machine spin-waiting OpenMP threads made this script take 31 min instead of 3.6 (docs/DEAR.md).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
DATASET=${1:-attr_hue_shift}
SEEDS=${2:-1}
for SEED in ${SEEDS}; do
    bash scripts/dear/tiny_attr_base2new.sh "${DATASET}" "${SEED}"  # ZeroshotCLIP, CoOp, DeAR
done
PLOT="${OUTPUT}/quickstart_${DATASET}.png"
"${PYTHON}" tools/compare.py "${OUTPUT}" --datasets "${DATASET}" \
    --methods ZeroshotCLIP/tiny CoOp/tiny_ep10 DeAR/tiny_ep10_batch4 --plot "${PLOT}"
ROLES="$(base2new_dir train_base DeAR tiny_ep10_batch4 "${DATASET}" "${SEEDS%% *}")/role_map"
echo
echo "Plot of the table:       ${PLOT}"
echo "DeAR's head roles:       ${ROLES}.png (heatmap; the map itself: ${ROLES}.json; docs/DEAR.md)"
