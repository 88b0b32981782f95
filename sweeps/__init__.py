"""Sweeps (tools/sweep.py): a protocol for several methods, datasets and seeds as chains of
scripts/common.sh steps (plan), run on this machine (local) or as SLURM jobs through submitit
(cluster, slurm), with the state of every chain (status) and of every step (steps)."""
