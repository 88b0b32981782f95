"""Run a protocol for several methods, datasets and seeds, with the methods' own script commands.

    python tools/sweep.py --protocol base2new --methods ZeroshotCLIP CoOp CoCoOp MaPLe PromptSRC DeAR \\
        --datasets caltech101 dtd --seeds 1 2 3 [--jobs N] [--dry-run] [--status]
    python tools/sweep.py ... --launcher slurm --slurm-partition gpu --slurm-time 12:00:00 [--wait]
    python tools/sweep.py --protocol base2new --methods ZeroshotCLIP CoOp --config-set tiny \\
        --datasets attr_color_shape attr_texture_shape --seeds 1 2    # the attribute world, offline
    python tools/compare.py output/ --protocol base2new

Every run is one step of scripts/common.sh, issued as `bash scripts/run.sh STEP TRAINER CFG ...`:
the command, output tree and skip/resume rule of the methods' scripts. A method's config comes
from its trainer's SWEEP_CONFIGS (engine/trainer.py), its extra KEY VALUE pairs from its
`sweep_opts`, so a new trainer with SWEEP_CONFIGS joins sweeps with no other change. Trainer files
written for Dassl join with --trainer-file (as train.py takes them; each command carries them in
$PROMPTLAB_TRAINER_FILES) and --configs METHOD=CFG (docs/EXTENDING.md).

Protocols (SHOTS defaults to 16, or to $SHOTS):
  base2new  train on the base classes, test on the new ones (base2new_train, base2new_test)
  xd        train on all ImageNet classes once per method and seed, test on every target (xd_train, xd_test)
  dg        the xd model (same run folder, so it is trained once for both) tested on the ImageNet variants
  fewshot   train and test on all classes, for 1 2 4 8 16 shots (few_shot)
Methods without learnable weights (TRAINABLE False, e.g. ZeroshotCLIP) are evaluated, never trained:
base2new_zeroshot per seed; xd/dg: xd_zeroshot per target and seed, in the cross_dataset/test tree;
fewshot: few_shot_zeroshot once per dataset (first seed) under few_shot/<dataset>/shots_0/.

A chain (train, then the tests that load it) runs in order; independent chains run in parallel with
--jobs. Finished runs are skipped and unfinished ones resume, so a stopped sweep continues where it
was when rerun. Each chain's console goes to <output>/sweeps/<protocol>-<time>/<chain>.log.
Runs start from a warm worker per slot (SLURM: per job) that has imported the toolbox and holds the
backbone weights, with results bit-identical to `python train.py` (engine/warm; --no-warm: each run
its own process).
NPROC=N in the environment trains each run with DDP over N GPUs (torchrun; docs/SCALING.md).

--launcher slurm submits one SLURM job per chain through submitit, as job arrays, and returns
(--wait: and waits for the sweep's jobs, then lists failures). A job stopped by its time limit or
by preemption is requeued and resumes from its newest checkpoint. Each step's console goes to
slurm-<job id>.log in its run folder. --status shows every chain's state (done, running or pending
with its job id, failed with its log, not started); rerunning the same command submits only the
chains that are not done, running or queued. --dry-run prints the submitit parameters and the jobs.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

import trainers  # noqa: F401  (registers the trainers)
from engine.errors import UsageError
from engine.registry import TRAINER_REGISTRY, did_you_mean
from engine.trainer import TrainerX
from external import ENV_VAR, load_trainer_files
from sweeps.cluster import MAX_ARRAY, MAX_TIMEOUTS, SlurmOptions, parse_opts, parse_time, slurm_folder
from sweeps.plan import DEFAULT_DATASETS, FEW_SHOTS, PROTOCOLS, Chain, Planner
from sweeps.steps import REPO


# ---- command line --------------------------------------------------------------------------------
def resolve_methods(names: list[str]) -> list[type[TrainerX]]:
    try:
        return [TRAINER_REGISTRY.get(n) for n in names]
    except KeyError as err:
        raise UsageError(f"--methods: {err.args[0]} (a trainer written for Dassl needs --trainer-file)") from None


def check_datasets(names: list[str]) -> None:
    known = sorted(p.stem for p in (REPO / "configs" / "datasets").glob("*.yaml"))
    for name in names:
        if name not in known:
            raise UsageError(f"--datasets: no configs/datasets/{name}.yaml.{did_you_mean(name, known)} "
                             f"Available: {', '.join(known)}")


def parse_overrides(items: list[str], methods: list[type[TrainerX]]) -> dict[str, str]:
    names = [m.__name__ for m in methods]
    out = {}
    for item in items:
        method, sep, cfg = item.partition("=")
        if not sep or not cfg:
            raise UsageError(f"--configs takes METHOD=CFG (e.g. CoOp=vit_b16_ep50), got {item!r}")
        if method not in names:
            raise UsageError(f"--configs {item}: {method!r} is not in --methods ({' '.join(names)})."
                             f"{did_you_mean(method, names)}")
        out[method] = cfg
    return out


def check_config_files(chains: list[Chain]) -> None:
    for chain in chains:
        for step in chain.steps:
            path = REPO / "configs" / "trainers" / step.args[0] / f"{step.args[1]}.yaml"
            if not path.is_file():
                raise UsageError(f"Config {path.relative_to(REPO)} does not exist (method {step.args[0]}); "
                                 "fix its SWEEP_CONFIGS entry or the --configs value")


SLURM_FLAGS = ("partition", "gpus_per_job", "cpus_per_job", "mem", "time", "account", "qos", "array_parallelism",
               "opt")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", required=True, choices=PROTOCOLS)
    p.add_argument("--methods", required=True, nargs="+", help="trainer names (TRAINER_REGISTRY)")
    p.add_argument("--datasets", nargs="+", help="dataset config names; default: the protocol's (xd, dg: the targets)")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--shots", nargs="+", type=int, help=f"default: {FEW_SHOTS} for fewshot, else $SHOTS or 16")
    p.add_argument("--config-set", choices=["paper", "tiny"], default="paper",
                   help="tiny: every method's SWEEP_CONFIGS['tiny'] (tiny-attr CLIP, attribute world)")
    p.add_argument("--configs", nargs="+", default=[], metavar="METHOD=CFG",
                   help="config per method, overriding the config set")
    p.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE", help="config overrides added to every run")
    p.add_argument("--root", type=Path, help="dataset root (DATA); default: $DATA or ./data")
    p.add_argument("--output", type=Path, help="output tree root (OUTPUT); default: $OUTPUT or ./output")
    p.add_argument("--launcher", choices=["local", "slurm"], default="local",
                   help="local: this machine (default); slurm: one SLURM job per chain, through submitit")
    p.add_argument("--jobs", type=int, help="local: chains run in parallel (GPUs round-robin, else the CPU "
                                            "threads split); default 1")
    p.add_argument("--status", action="store_true",
                   help="show each chain's state (from the output tree and the SLURM jobs) and run nothing")
    p.add_argument("--dry-run", action="store_true",
                   help="print the commands, one per line (slurm: the submitit parameters and the jobs), run nothing")
    p.add_argument("--wait", nargs="?", type=float, const=30.0, metavar="POLL_S",
                   help="slurm: after submitting, wait until the sweep's jobs have left the queue (polling every "
                        "POLL_S seconds, default 30) and list the chains that did not finish")
    p.add_argument("--no-warm", action="store_true",
                   help="start every run as its own `python train.py` process, without a warm worker (engine/warm)")
    p.add_argument("--trainer-file", nargs="+", default=[], metavar="PATH",
                   help=f"trainer files written for Dassl and their config keys, as train.py takes them; the "
                        f"runs get them through ${ENV_VAR}")
    slurm = p.add_argument_group("SLURM (with --launcher slurm; each job runs one chain)")
    slurm.add_argument("--slurm-partition")
    slurm.add_argument("--slurm-gpus-per-job", type=int, help="GPUs per job (default 1; 0 on a CPU partition; "
                                                              "more than 1: each run trains with DDP over them)")
    slurm.add_argument("--slurm-cpus-per-job", type=int, help="CPUs per job (sbatch --cpus-per-task)")
    slurm.add_argument("--slurm-mem", help="memory per job, as sbatch --mem takes it (e.g. 32G)")
    slurm.add_argument("--slurm-time", help="time limit per job: minutes or [D-]HH:MM:SS (default 1-00:00:00); a "
                                            "job that reaches it is requeued and resumes")
    slurm.add_argument("--slurm-account")
    slurm.add_argument("--slurm-qos")
    slurm.add_argument("--slurm-array-parallelism", type=int, help="jobs of the array running at once (default 256)")
    slurm.add_argument("--slurm-opt", action="append", default=[], metavar="KEY=VALUE",
                       help="any other sbatch option, repeatable (e.g. --slurm-opt constraint=a100)")
    args = p.parse_args(argv)
    for name in ("methods", "datasets", "seeds", "shots"):  # a repeated item would run twice at once
        if getattr(args, name):
            setattr(args, name, list(dict.fromkeys(getattr(args, name))))
    if len(args.opts) % 2:
        p.error(f"--opts takes KEY VALUE pairs; got an odd count: {' '.join(args.opts)}")
    if args.jobs is not None and args.jobs < 1:
        p.error("--jobs must be at least 1")
    if args.launcher == "local":
        given = [f"--slurm-{n.replace('_', '-')}" for n in SLURM_FLAGS if getattr(args, f"slurm_{n}") not in (None, [])]
        if given or args.wait is not None:
            p.error(f"{(given or ['--wait'])[0]} needs --launcher slurm")
    elif args.jobs is not None:
        p.error("--jobs is for --launcher local (on SLURM every chain is its own job; "
                "see --slurm-array-parallelism)")
    for name in ("gpus_per_job", "cpus_per_job", "array_parallelism"):
        value = getattr(args, f"slurm_{name}")
        if value is not None and value < (0 if name == "gpus_per_job" else 1):
            p.error(f"--slurm-{name.replace('_', '-')} must be at least {0 if name == 'gpus_per_job' else 1}")
    if args.wait is not None and args.wait <= 0:
        p.error("--wait takes a positive polling interval in seconds")
    return args


def slurm_options(args: argparse.Namespace) -> SlurmOptions:
    given = {"partition": args.slurm_partition, "gpus_per_job": args.slurm_gpus_per_job,
             "cpus_per_job": args.slurm_cpus_per_job, "mem": args.slurm_mem, "account": args.slurm_account,
             "qos": args.slurm_qos, "array_parallelism": args.slurm_array_parallelism,
             "time_min": parse_time(args.slurm_time) if args.slurm_time else None}
    return SlurmOptions(**{k: v for k, v in given.items() if v is not None}, extra=parse_opts(args.slurm_opt))


def print_slurm_plan(chains: list[Chain], env: dict[str, str], options: SlurmOptions, output: Path) -> None:
    """--launcher slurm --dry-run: what would be submitted (before checking what has finished)."""
    print(f"submitit.SlurmExecutor(folder={str(slurm_folder(output))!r}, max_num_timeout={MAX_TIMEOUTS})"
          ".update_parameters(")
    for key, value in options.parameters(REPO).items():
        print(f"    {key}={value!r},")
    print(")")
    if options.job_env():
        print("job environment: " + " ".join(f"{k}={v}" for k, v in options.job_env().items()))
    arrays = -(-len(chains) // MAX_ARRAY)
    grouping = f"{arrays} job array{'s' if arrays > 1 else ''} (at most {options.array_parallelism} running at once)"
    print(f"{len(chains)} job{'s' if len(chains) > 1 else ''}, one per chain"
          f"{', in ' + grouping if len(chains) > 1 else ''}; {sum(len(c.steps) for c in chains)} steps:")
    for i, chain in enumerate(chains):
        print(f"[{i}] {chain.name}")
        for step in chain.steps:
            print(f"    {step.command(env)}")


def without_wait(argv: list[str]) -> list[str]:
    """The command line without --wait [POLL_S]: the command that shows the sweep's state."""
    out, skip_value = [], False
    for word in argv:
        if skip_value:
            skip_value = False
            if word.replace(".", "", 1).isdigit():
                continue
        if word == "--wait":
            skip_value = True
        elif not word.startswith("--wait="):
            out.append(word)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    trainer_files = load_trainer_files(args.trainer_file)
    methods = resolve_methods(args.methods)
    datasets = args.datasets or DEFAULT_DATASETS[args.protocol]
    check_datasets(datasets)
    shots = args.shots or (FEW_SHOTS if args.protocol == "fewshot" else [int(os.environ.get("SHOTS", 16))])
    env = {}
    if args.root:
        env["DATA"] = str(args.root.resolve())
    if args.output:
        env["OUTPUT"] = str(args.output.resolve())
    if trainer_files:
        env[ENV_VAR] = os.pathsep.join(map(str, trainer_files))
    output = env.get("OUTPUT") or os.environ.get("OUTPUT") or "output"
    overrides = parse_overrides(args.configs, methods)
    planner = Planner(args.protocol, methods, args.config_set, overrides, args.opts, output)
    chains = planner.chains(datasets, args.seeds, shots)
    check_config_files(chains)
    options = slurm_options(args) if args.launcher == "slurm" else None
    if args.dry_run:
        if options is not None:
            print_slurm_plan(chains, env, options, REPO / output)
            return 0
        for chain in chains:
            for step in chain.steps:
                print(step.command(env))
        return 0
    if args.status:
        from sweeps.status import print_status

        return print_status(chains, env, REPO / output)
    if options is not None:
        try:
            from sweeps.slurm import launch
        except ImportError as e:
            raise UsageError(f"--launcher slurm needs submitit ({e}): pip install -r requirements.txt") from None
        status = shlex.join(["python", "tools/sweep.py", *without_wait(sys.argv[1:] if argv is None else argv),
                             "--status"])
        return launch(chains, env, options, REPO / output, status, args.wait, warm=not args.no_warm)
    from sweeps.local import run_sweep

    return run_sweep(chains, args.protocol, env, args.jobs or 1, REPO / output, warm=not args.no_warm)
