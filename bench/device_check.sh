#!/bin/bash
# The accelerator check (bench/device_check.py): every trainer's step and evaluation in fp32, fp16
# and amp, throughput and memory, and a full DeAR base-to-new run through the scripts.
#   bash bench/device_check.sh                 # one CUDA GPU: random-init ViT-B/16, generated data
#   bash bench/device_check.sh --cpu --quick   # this CPU, tiny-attr, seconds
set -e
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" bench/device_check.py "$@"
