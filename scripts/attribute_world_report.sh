#!/bin/bash
# Regenerates docs/results/attribute_world.md (+ .png): base-to-new on the attribute world with the
# tiny-attr CLIP, every trainer, seeds 1-3, then the table and plots. Offline, CPU; about an hour
# on 2 cores. Finished runs under $OUTPUT are reused (default output/attr_world).
#   bash scripts/attribute_world_report.sh [JOBS]
set -e
cd "$(dirname "$0")/.."
DATA=${DATA:-data}
OUTPUT=${OUTPUT:-output/attr_world}
PYTHON=${PYTHON:-python}
"${PYTHON}" tools/sweep.py --protocol base2new --config-set tiny \
    --methods ZeroshotCLIP CoOp CLIPAdapter IVLP MaPLe CoCoOp PromptSRC MMRL MMRLpp DeAR \
    --datasets attr_color_holdout attr_hue_shift --seeds 1 2 3 \
    --root "${DATA}" --output "${OUTPUT}" --jobs "${1:-2}"
"${PYTHON}" tools/compare.py "${OUTPUT}" --protocol base2new --datasets attr_color_holdout attr_hue_shift \
    --report docs/results/attribute_world.md \
    --title "Base-to-new on the attribute world (tiny-attr CLIP, 16 shots, seeds 1-3)" \
    --regenerate "bash scripts/attribute_world_report.sh"
