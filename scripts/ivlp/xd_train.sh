#!/bin/bash
# IVLP cross-dataset, training on all ImageNet classes (SHOTS, default 16 shots): bash scripts/ivlp/xd_train.sh SEED [CFG]
set -e
cd "$(dirname "$0")/../.."
source scripts/common.sh
xd_train IVLP "${2:-vit_b16_c2_ep5_batch4_2+2ctx}" "$1"
