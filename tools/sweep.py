"""Run a protocol for several methods, datasets and seeds, with the methods' own script commands.

    python tools/sweep.py --protocol base2new --methods ZeroshotCLIP CoOp CoCoOp MaPLe PromptSRC DeAR \\
        --datasets caltech101 dtd --seeds 1 2 3 [--jobs N] [--dry-run]
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
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import trainers  # noqa: E402,F401  (registers the trainers)
from engine.cli import run_cli  # noqa: E402
from engine.errors import UsageError  # noqa: E402
from engine.registry import TRAINER_REGISTRY, did_you_mean  # noqa: E402
from engine.trainer import TrainerX  # noqa: E402
from external import ENV_VAR, load_trainer_files  # noqa: E402

COOP_DATASETS = ["imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
                 "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101"]
DEFAULT_DATASETS = {
    "base2new": COOP_DATASETS,
    "xd": COOP_DATASETS[1:],
    "dg": ["imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"],
    "fewshot": COOP_DATASETS,
}
PROTOCOLS = tuple(DEFAULT_DATASETS)
FEW_SHOTS = [1, 2, 4, 8, 16]
XD_SOURCE = "imagenet"  # xd_train's dataset


@dataclass(frozen=True)
class Step:
    """One call of a scripts/common.sh step; `out_dirs` are the run folders it fills."""

    function: str
    args: tuple[str, ...]
    shots: int
    out_dirs: tuple[str, ...]

    def command(self, env: dict[str, str]) -> str:
        """The copy-pastable command line (run from the repo root)."""
        assigns = [f"SHOTS={self.shots}", *(f"{k}={shlex.quote(v)}" for k, v in env.items())]
        return " ".join([*assigns, "bash", "scripts/run.sh", self.function, *map(shlex.quote, self.args)])


@dataclass(frozen=True)
class Chain:
    """Steps that must run in order (a training and the evaluations of its model)."""

    name: str
    steps: tuple[Step, ...]


# ---- the output tree of scripts/common.sh (tests/test_sweep.py checks them against the shell) ----
def base2new_dir(output: str, part: str, trainer: str, cfg: str, dataset: str, seed: int, shots: int) -> str:
    return f"{output}/base2new/{part}/{dataset}/shots_{shots}/{trainer}/{cfg}/seed{seed}"


def xd_dir(output: str, part: str, trainer: str, cfg: str, dataset: str, seed: int, shots: int) -> str:
    return f"{output}/cross_dataset/{part}/{dataset}/shots_{shots}/{trainer}/{cfg}/seed{seed}"


def few_shot_dir(output: str, trainer: str, cfg: str, dataset: str, seed: int, shots: int) -> str:
    return f"{output}/few_shot/{dataset}/shots_{shots}/{trainer}/{cfg}/seed{seed}"


# ---- configs -----------------------------------------------------------------------------------
def sweep_config(trainer_cls: type[TrainerX], key: str, dataset: str, shots: int) -> str | None:
    """SWEEP_CONFIGS lookup: "<key>:<dataset>", "<key>:<K>shot", then "<key>"; dg falls back to xd
    (the same model)."""
    keys = [f"{key}:{dataset}", f"{key}:{shots}shot", key]
    if key == "dg":
        keys += [f"xd:{dataset}", f"xd:{shots}shot", "xd"]
    return next((trainer_cls.SWEEP_CONFIGS[k] for k in keys if k in trainer_cls.SWEEP_CONFIGS), None)


class Planner:
    """Turns the sweep's arguments into chains of steps."""

    def __init__(self, protocol: str, methods: list[type[TrainerX]], config_set: str,
                 overrides: dict[str, str], opts: list[str], output: str):
        self.protocol = protocol
        self.methods = methods
        self.key = "tiny" if config_set == "tiny" else protocol
        self.overrides = overrides
        self.opts = tuple(opts)
        self.output = output
        self.missing: list[str] = []

    def config(self, method: type[TrainerX], dataset: str, shots: int) -> str:
        name = method.__name__
        cfg = self.overrides.get(name) or sweep_config(method, self.key, dataset, shots)
        if cfg is None:
            self.missing.append(f"{name}.SWEEP_CONFIGS has no {self.key!r}")
            return ""
        return cfg

    def step(self, function: str, method: type[TrainerX], cfg: str, dataset: str, seed: int, shots: int,
             out_dirs: list[str], model_dir: str = "", positional_dataset: bool = True) -> Step:
        extra = method.sweep_opts(function, dataset, model_dir)
        where = (dataset,) if positional_dataset else ()
        args = (method.__name__, cfg, *where, str(seed), *extra, *self.opts)
        return Step(function, args, shots, tuple(out_dirs))

    def chains(self, datasets: list[str], seeds: list[int], shots_list: list[int]) -> list[Chain]:
        build = {"base2new": self.base2new, "xd": self.cross, "dg": self.cross, "fewshot": self.fewshot}
        chains = build[self.protocol](datasets, seeds, shots_list)
        if self.missing:
            raise UsageError(
                "No config for:\n  " + "\n  ".join(sorted(set(self.missing)))
                + "\nPass one with --configs METHOD=CFG (a name under configs/trainers/METHOD/), "
                "or add the key to the trainer's SWEEP_CONFIGS."
            )
        return chains

    def base2new(self, datasets: list[str], seeds: list[int], shots_list: list[int]) -> list[Chain]:
        out = []
        for shots in shots_list:
            for seed in seeds:
                for dataset in datasets:
                    for m in self.methods:
                        cfg = self.config(m, dataset, shots)
                        t = m.__name__
                        base = base2new_dir(self.output, "train_base", t, cfg, dataset, seed, shots)
                        new = base2new_dir(self.output, "test_new", t, cfg, dataset, seed, shots)
                        if m.TRAINABLE:
                            steps = (self.step("base2new_train", m, cfg, dataset, seed, shots, [base]),
                                     self.step("base2new_test", m, cfg, dataset, seed, shots, [new], model_dir=base))
                        else:
                            steps = (self.step("base2new_zeroshot", m, cfg, dataset, seed, shots, [base, new]),)
                        out.append(Chain(f"{t}-{cfg}-{dataset}-shots{shots}-seed{seed}", steps))
        return out

    def cross(self, targets: list[str], seeds: list[int], shots_list: list[int]) -> list[Chain]:
        out = []
        for shots in shots_list:
            for seed in seeds:
                for m in self.methods:
                    cfg = self.config(m, XD_SOURCE, shots)
                    t = m.__name__
                    tests = {d: xd_dir(self.output, "test", t, cfg, d, seed, shots) for d in targets}
                    if m.TRAINABLE:
                        model = xd_dir(self.output, "train", t, cfg, XD_SOURCE, seed, shots)
                        steps = [self.step("xd_train", m, cfg, XD_SOURCE, seed, shots, [model],
                                           positional_dataset=False)]
                        steps += [self.step("xd_test", m, cfg, d, seed, shots, [run], model_dir=model)
                                  for d, run in tests.items()]
                        out.append(Chain(f"{t}-{cfg}-{XD_SOURCE}-shots{shots}-seed{seed}", tuple(steps)))
                    else:
                        out += [Chain(f"{t}-{cfg}-{d}-shots{shots}-seed{seed}",
                                      (self.step("xd_zeroshot", m, cfg, d, seed, shots, [run]),))
                                for d, run in tests.items()]
        return out

    def fewshot(self, datasets: list[str], seeds: list[int], shots_list: list[int]) -> list[Chain]:
        out = []
        for dataset in datasets:
            for m in self.methods:
                t = m.__name__
                if not m.TRAINABLE:
                    seed, cfg = seeds[0], self.config(m, dataset, 0)
                    run = few_shot_dir(self.output, t, cfg, dataset, seed, 0)
                    out.append(Chain(f"{t}-{cfg}-{dataset}-shots0-seed{seed}",
                                     (self.step("few_shot_zeroshot", m, cfg, dataset, seed, 0, [run]),)))
                    continue
                for shots in shots_list:
                    cfg = self.config(m, dataset, shots)
                    for seed in seeds:
                        run = few_shot_dir(self.output, t, cfg, dataset, seed, shots)
                        out.append(Chain(f"{t}-{cfg}-{dataset}-shots{shots}-seed{seed}",
                                         (self.step("few_shot", m, cfg, dataset, seed, shots, [run]),)))
        return out


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
    p.add_argument("--jobs", type=int, default=1,
                   help="chains run in parallel (GPUs round-robin, else the CPU threads split)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, one per line, and run nothing")
    p.add_argument("--trainer-file", nargs="+", default=[], metavar="PATH",
                   help=f"trainer files written for Dassl and their config keys, as train.py takes them; the "
                        f"runs get them through ${ENV_VAR}")
    args = p.parse_args(argv)
    for name in ("methods", "datasets", "seeds", "shots"):  # a repeated item would run twice at once
        if getattr(args, name):
            setattr(args, name, list(dict.fromkeys(getattr(args, name))))
    if len(args.opts) % 2:
        p.error(f"--opts takes KEY VALUE pairs; got an odd count: {' '.join(args.opts)}")
    if args.jobs < 1:
        p.error("--jobs must be at least 1")
    return args


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
    if args.dry_run:
        for chain in chains:
            for step in chain.steps:
                print(step.command(env))
        return 0
    from tools.sweep_run import run_sweep

    return run_sweep(chains, args.protocol, env, args.jobs, REPO / output)


if __name__ == "__main__":
    run_cli(main)
