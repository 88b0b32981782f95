"""Warm workers: runs of a sweep start from a process that has already imported the toolbox and
read the backbone weights, instead of paying for both in every `python train.py`.

A worker (server.py) imports what train.py imports, then waits on a Unix socket. For each
`train.py ...` command sent to it (client.py: scripts/common.sh's run_job uses it when
$PROMPTLAB_WORKER names a worker's socket) it reads the run's backbone weights if it does not
hold them yet, and forks: the child takes the client's stdin/stdout/stderr, working folder,
environment and arguments, reseeds the global random generators as a new interpreter would, and
runs train.py as __main__. The worker itself computes nothing (no OpenMP or CUDA work, no threads
beyond those its imports start), so each run starts from the state a fresh `python train.py` has
after its imports. Its results are bit-identical to that process's (tests/test_warm.py).

The client stands in for the train.py process: its exit status is the run's, signals sent to it
go to the run, and a killed client takes its run down. Where a worker cannot serve a command
exactly as a new process would (another interpreter environment, changed source files, another
checkout), the client says why and runs `python train.py ...` itself. owner.py starts and stops
workers for the sweeps (tools/sweep.py, one per job slot; the SLURM launcher, one per job).
"""
