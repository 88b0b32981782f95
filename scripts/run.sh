#!/bin/bash
# One protocol step of scripts/common.sh, from the repo root (tools/sweep.py issues these):
#   bash scripts/run.sh FUNCTION TRAINER CFG [DATASET] SEED [KEY VALUE ...]
# e.g. SHOTS=16 bash scripts/run.sh base2new_train CoOp vit_b16_ep50_ctxv1 dtd 1
set -e
cd "$(dirname "$0")/.."
source scripts/common.sh
case "$1" in
    base2new_train | base2new_test | base2new_zeroshot | xd_train | xd_test | xd_zeroshot | few_shot | few_shot_zeroshot) ;;
    *)
        echo "scripts/run.sh: unknown step '$1'; one of: base2new_train base2new_test base2new_zeroshot" \
            "xd_train xd_test xd_zeroshot few_shot few_shot_zeroshot" >&2
        exit 2
        ;;
esac
"$@"
