# Sourced by every method's scripts: where the data is, the skip/resume rule, and the
# protocol layouts, so that all methods write the same output tree.
# DATA: set it in the environment (export DATA=/path/to/datasets); defaults to ./data.
# OUTPUT: the root of the output tree; defaults to ./output (relative paths are from the repo root).
DATA=${DATA:-data}
OUTPUT=${OUTPUT:-output}
PYTHON=${PYTHON:-python}
SHOTS=${SHOTS:-16}
# NPROC: processes (GPUs) per run; above 1, run_job starts train.py under torchrun (DDP, docs/SCALING.md).
NPROC=${NPROC:-1}

# run_job DIR ARGS...: train.py into DIR. train.py skips a finished run whose manifest (trainer,
# dataset, seed, shots, classes, backbone weights, config: engine/run_identity.py) is this one's,
# refuses a folder that holds another run (naming the differences), and resumes an unfinished one.
# With PRINT_RUNS set, the train.py command is printed instead of run (tools/sweep.py reads it).
run_job() {
    local dir=$1
    shift
    local run=(train.py --root "${DATA}" --output-dir "${dir}" --skip-finished "$@")
    if [ -n "${PRINT_RUNS:-}" ]; then
        printf '%q ' "${run[@]}"
        echo
    elif [ "${NPROC}" -gt 1 ]; then
        "${PYTHON}" -m torch.distributed.run --standalone --nproc-per-node "${NPROC}" "${run[@]}"
    elif [ -n "${PROMPTLAB_WORKER:-}" ]; then  # a warm worker the sweep started (engine/warm): same run, no start-up
        "${PYTHON}" -m engine.warm.client "${run[@]}"
    else
        "${PYTHON}" "${run[@]}"
    fi
}

# max_epoch CONFIG_YAML: the epoch a finished run's last checkpoint carries.
max_epoch() {
    "${PYTHON}" -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['OPTIM']['MAX_EPOCH'])" "$1"
}

# trained_epoch MODEL_DIR CONFIG_YAML: the last epoch of the model trained in MODEL_DIR. Its
# results.json records the config it ran with, command-line overrides (OPTIM.MAX_EPOCH ...)
# included; before that run has finished, CONFIG_YAML's MAX_EPOCH.
trained_epoch() {
    if [ -f "$1/results.json" ]; then
        "${PYTHON}" -c "import json, sys; print(json.load(open(sys.argv[1]))['config']['OPTIM']['MAX_EPOCH'])" \
            "$1/results.json"
    else
        max_epoch "$2"
    fi
}

# imagenet_or DATASET CFG: the ImageNet config (vit_b16_imagenet, MMRL's batch and epochs) for
# imagenet, else CFG.
imagenet_or() {
    if [ "$1" = imagenet ]; then echo vit_b16_imagenet; else echo "$2"; fi
}

# script_args TRAINER DEFAULT_CFG ARGS...: what a method script gets after its positional
# arguments: an optional CFG (ARGS' first word, when configs/trainers/TRAINER/<it>.yaml exists;
# else DEFAULT_CFG), then config options as KEY VALUE pairs (e.g. OPTIM.MAX_EPOCH 5), which go
# to every train.py the script runs, after the script's own options, so that they win. Sets CFG
# and OPTS; a word that is neither exits with an error naming it.
script_args() {
    local trainer=$1
    CFG=$2
    shift 2
    if [ $# -gt 0 ] && [ -f "configs/trainers/${trainer}/$1.yaml" ]; then
        CFG=$1
        shift
    elif [ $# -gt 0 ] && ! is_config_key "$1"; then
        echo "error: '$1' is neither a config of ${trainer} (configs/trainers/${trainer}/$1.yaml) nor a config KEY" >&2
        echo "  configs: $(cd "configs/trainers/${trainer}" && ls *.yaml | sed 's/\.yaml$//' | tr '\n' ' ')" >&2
        echo "  options after the positional arguments are KEY VALUE pairs, e.g. OPTIM.MAX_EPOCH 5" >&2
        exit 2
    fi
    check_opts "$@"
}

# check_opts ARGS...: ARGS as KEY VALUE pairs (sets OPTS), or an error naming the word out of place.
check_opts() {
    OPTS=("$@")
    local i
    for ((i = 0; i < ${#OPTS[@]}; i += 2)); do
        if ! is_config_key "${OPTS[i]}"; then
            echo "error: '${OPTS[i]}' stands where a config KEY goes: options after the positional arguments" \
                "are KEY VALUE pairs (e.g. OPTIM.MAX_EPOCH 5 TRAINER.DEAR.ROLE_MAP roles.json)" >&2
            exit 2
        fi
    done
    if [ $((${#OPTS[@]} % 2)) -ne 0 ]; then
        echo "error: config option ${OPTS[${#OPTS[@]} - 1]} has no VALUE: options come as KEY VALUE pairs" >&2
        exit 2
    fi
}

# is_config_key WORD: whether WORD reads as a config key (TASK, OPTIM.LR, TRAINER.MMRLpp.BETA, ...).
is_config_key() {
    [[ $1 =~ ^[A-Z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$ ]]
}

base2new_dir() {  # base2new_dir train_base|test_new TRAINER CFG DATASET SEED
    echo "${OUTPUT}/base2new/$1/$4/shots_${SHOTS}/$2/$3/seed$5"
}

# base2new_train TRAINER CFG DATASET SEED [ARGS...]: train (or, with --eval-only, evaluate)
# on the base classes; the config is configs/trainers/TRAINER/CFG.yaml.
base2new_train() {
    local trainer=$1 cfg=$2 dataset=$3 seed=$4
    shift 4
    run_job "$(base2new_dir train_base "${trainer}" "${cfg}" "${dataset}" "${seed}")" \
        --seed "${seed}" --trainer "${trainer}" \
        --dataset-config-file "configs/datasets/${dataset}.yaml" \
        --config-file "configs/trainers/${trainer}/${cfg}.yaml" \
        DATASET.NUM_SHOTS "${SHOTS}" DATASET.SUBSAMPLE_CLASSES base "$@"
}

# base2new_test TRAINER CFG DATASET SEED [ARGS...]: evaluate the base-trained model (its
# last epoch: trained_epoch) on the new classes.
base2new_test() {
    local trainer=$1 cfg=$2 dataset=$3 seed=$4
    shift 4
    local config="configs/trainers/${trainer}/${cfg}.yaml"
    local model_dir
    model_dir=$(base2new_dir train_base "${trainer}" "${cfg}" "${dataset}" "${seed}")
    run_job "$(base2new_dir test_new "${trainer}" "${cfg}" "${dataset}" "${seed}")" \
        --seed "${seed}" --trainer "${trainer}" \
        --dataset-config-file "configs/datasets/${dataset}.yaml" \
        --config-file "${config}" \
        --model-dir "${model_dir}" \
        --load-epoch "$(trained_epoch "${model_dir}" "${config}")" --eval-only \
        DATASET.NUM_SHOTS "${SHOTS}" DATASET.SUBSAMPLE_CLASSES new "$@"
}

# base2new_zeroshot TRAINER CFG DATASET SEED [ARGS...]: a method without learnable weights,
# evaluated on the base classes (train_base tree) and on the new classes (test_new tree).
base2new_zeroshot() {
    local trainer=$1 cfg=$2 dataset=$3 seed=$4
    shift 4
    local common=(--seed "${seed}" --trainer "${trainer}" --eval-only
        --dataset-config-file "configs/datasets/${dataset}.yaml"
        --config-file "configs/trainers/${trainer}/${cfg}.yaml")
    run_job "$(base2new_dir train_base "${trainer}" "${cfg}" "${dataset}" "${seed}")" "${common[@]}" \
        DATASET.SUBSAMPLE_CLASSES base "$@"
    run_job "$(base2new_dir test_new "${trainer}" "${cfg}" "${dataset}" "${seed}")" "${common[@]}" \
        DATASET.SUBSAMPLE_CLASSES new "$@"
}

xd_dir() {  # xd_dir train|test TRAINER CFG DATASET SEED
    echo "${OUTPUT}/cross_dataset/$1/$4/shots_${SHOTS}/$2/$3/seed$5"
}

# xd_train TRAINER CFG SEED [ARGS...]: train on all ImageNet classes, the cross-dataset source.
xd_train() {
    local trainer=$1 cfg=$2 seed=$3
    shift 3
    run_job "$(xd_dir train "${trainer}" "${cfg}" imagenet "${seed}")" \
        --seed "${seed}" --trainer "${trainer}" \
        --dataset-config-file configs/datasets/imagenet.yaml \
        --config-file "configs/trainers/${trainer}/${cfg}.yaml" \
        DATASET.NUM_SHOTS "${SHOTS}" "$@"
}

# xd_test TRAINER CFG DATASET SEED [ARGS...]: evaluate the ImageNet-trained model (its last
# epoch: trained_epoch) on all classes of DATASET.
xd_test() {
    local trainer=$1 cfg=$2 dataset=$3 seed=$4
    shift 4
    local config="configs/trainers/${trainer}/${cfg}.yaml"
    local model_dir
    model_dir=$(xd_dir train "${trainer}" "${cfg}" imagenet "${seed}")
    run_job "$(xd_dir test "${trainer}" "${cfg}" "${dataset}" "${seed}")" \
        --seed "${seed}" --trainer "${trainer}" \
        --dataset-config-file "configs/datasets/${dataset}.yaml" \
        --config-file "${config}" \
        --model-dir "${model_dir}" \
        --load-epoch "$(trained_epoch "${model_dir}" "${config}")" --eval-only "$@"
}

# xd_zeroshot TRAINER CFG DATASET SEED [ARGS...]: a method without learnable weights on all
# classes of DATASET, in the cross-dataset test tree (there is no ImageNet model to load).
xd_zeroshot() {
    local trainer=$1 cfg=$2 dataset=$3 seed=$4
    shift 4
    run_job "$(xd_dir test "${trainer}" "${cfg}" "${dataset}" "${seed}")" \
        --seed "${seed}" --trainer "${trainer}" --eval-only \
        --dataset-config-file "configs/datasets/${dataset}.yaml" \
        --config-file "configs/trainers/${trainer}/${cfg}.yaml" "$@"
}

few_shot_dir() {  # few_shot_dir TRAINER CFG DATASET SEED
    echo "${OUTPUT}/few_shot/$3/shots_${SHOTS}/$1/$2/seed$4"
}

# few_shot TRAINER CFG DATASET SEED [ARGS...]: train and test on all classes with SHOTS shots.
few_shot() {
    local trainer=$1 cfg=$2 dataset=$3 seed=$4
    shift 4
    run_job "$(few_shot_dir "${trainer}" "${cfg}" "${dataset}" "${seed}")" \
        --seed "${seed}" --trainer "${trainer}" \
        --dataset-config-file "configs/datasets/${dataset}.yaml" \
        --config-file "configs/trainers/${trainer}/${cfg}.yaml" \
        DATASET.NUM_SHOTS "${SHOTS}" "$@"
}

# few_shot_zeroshot TRAINER CFG DATASET SEED [ARGS...]: a method without learnable weights on all
# classes of DATASET. No shot count changes it, so it is one run, filed under shots_0.
few_shot_zeroshot() {
    local SHOTS=0
    local trainer=$1 cfg=$2 dataset=$3 seed=$4
    shift 4
    run_job "$(few_shot_dir "${trainer}" "${cfg}" "${dataset}" "${seed}")" \
        --seed "${seed}" --trainer "${trainer}" --eval-only \
        --dataset-config-file "configs/datasets/${dataset}.yaml" \
        --config-file "configs/trainers/${trainer}/${cfg}.yaml" \
        DATASET.NUM_SHOTS "${SHOTS}" "$@"
}
