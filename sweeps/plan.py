"""A sweep as chains of scripts/common.sh steps: the protocols, the output tree, the configs.

Every run is one step of scripts/common.sh, issued as `bash scripts/run.sh STEP TRAINER CFG ...`:
the command, output tree and skip/resume rule of the methods' scripts. A method's config comes
from its trainer's SWEEP_CONFIGS (engine/trainer.py), its extra KEY VALUE pairs from its
`sweep_opts`, so a new trainer with SWEEP_CONFIGS joins sweeps with no other change. A chain is a
training and the evaluations of its model, run in order; chains are independent of each other.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass

from engine.errors import UsageError
from engine.trainer import TrainerX

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
