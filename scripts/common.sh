# Sourced by every method's scripts: where the data is, and the skip/resume rule.
# DATA: set it in the environment (export DATA=/path/to/datasets); defaults to ./data.
DATA=${DATA:-data}
PYTHON=${PYTHON:-python}

# run_job DIR ARGS...: train.py into DIR. A finished run (DIR/results.json) is skipped;
# an unfinished one resumes from its newest checkpoint (train.py auto-resumes from DIR).
run_job() {
    local dir=$1
    shift
    if [ -f "${dir}/results.json" ]; then
        echo "The results exist at ${dir} (so skip this job)"
        return 0
    fi
    "${PYTHON}" train.py --root "${DATA}" --output-dir "${dir}" "$@"
}
