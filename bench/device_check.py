"""The accelerator check: every trainer's training step and evaluation in fp32, fp16 and amp, the
throughput and memory table, and a full DeAR base-to-new run through the real scripts, then again
through a warm worker (engine/warm: it must work on the device, with the same accuracies).

    bash bench/device_check.sh                  # CUDA: random-init ViT-B/16, generated 224 px data
    bash bench/device_check.sh --cpu --quick    # this CPU, tiny-attr, seconds (CI runs it)
    bash bench/device_check.sh --out DIR        # where the data, runs and device_check.json go

Per trainer and precision, on the same seed (so the same initial weights): the evaluation logits
of one test batch before any training, one training step (its loss must be finite, and every
learnable tensor must keep its dtype), then training and evaluation images per second and the
peak memory. fp16 and amp logits must be within TOLERANCE of fp32's, measured in cosine units
(|logit difference| / logit_scale), since CLIP's logits are scaled cosines. Nothing is downloaded:
the backbone is a random init (tiny-attr's committed weights with --quick), the data generated.
Exit status 1 if any check fails.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import datasets  # noqa: E402,F401  (registers the datasets)
import trainers  # noqa: E402,F401  (registers the trainers)
from engine.cli import run_cli  # noqa: E402
from engine.errors import UsageError  # noqa: E402
from engine.launch import parse_args, setup_cfg  # noqa: E402
from engine.registry import TRAINER_REGISTRY  # noqa: E402
from bench.common import make_caltech, write_role_map  # noqa: E402
from engine.utils import set_random_seed  # noqa: E402

TOLERANCE = {"fp16": 2e-2, "amp": 2e-2}  # max |logit - fp32 logit| / logit_scale


# ---- one trainer, one precision -----------------------------------------------------------------
def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def build(setting: dict, trainer: str, prec: str, out: Path):
    cls = TRAINER_REGISTRY.get(trainer)
    argv = ["--root", setting["data"], "--seed", "1", "--trainer", trainer,
            "--dataset-config-file", "configs/datasets/caltech101.yaml",
            "--config-file", str(REPO / "configs" / "trainers" / trainer / f"{setting['configs'][trainer]}.yaml"),
            "--output-dir", str(out),
            "DATASET.NUM_SHOTS", str(setting["shots"]), "DATASET.SUBSAMPLE_CLASSES", "base",
            "DATALOADER.NUM_WORKERS", str(setting["workers"]), "USE_CUDA", str(setting["device"] == "cuda"),
            *setting["backbone_opts"]]
    if cls.CONFIG_NODE:
        argv += [f"TRAINER.{cls.CONFIG_NODE}.PREC", prec]
    if trainer == "DeAR":
        argv += ["TRAINER.DEAR.ROLE_MAP", setting["role_map"]]
    cfg = setup_cfg(parse_args(argv))
    set_random_seed(1)
    with contextlib.redirect_stdout(io.StringIO()):
        return cls(cfg)


def eval_logits(t, images: torch.Tensor) -> torch.Tensor:
    t.set_model_mode("eval")
    with torch.no_grad(), t.evaluation_context(), t.autocast():
        return t.model_inference(images).float()


def learnables(t) -> dict[str, torch.Tensor]:
    return {f"{name}.{k}": p for name in t.get_model_names()
            for k, p in t._models[name].named_parameters() if p.requires_grad}


def logit_scale(t) -> float:
    model = t.model
    clip = getattr(model, "clip", None)
    return float(clip.logit_scale.exp()) if clip is not None else 1.0


def check_one(setting: dict, trainer: str, prec: str, reference: torch.Tensor | None) -> tuple[dict, torch.Tensor]:
    device = setting["device"]
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t = build(setting, trainer, prec, Path(setting["out"]) / "steps" / f"{trainer}-{prec}")
    test_batch = next(iter(t.test_loader))
    images, _ = t.parse_batch_test(test_batch)
    logits = eval_logits(t, images)
    row = {"trainer": trainer, "prec": prec, "problems": []}
    if reference is not None:
        gap = (logits - reference).abs().max().item() / logit_scale(t)
        row["logit_gap"] = gap
        if not gap <= TOLERANCE[prec]:
            row["problems"].append(f"logits {gap:.2e} from fp32 (tolerance {TOLERANCE[prec]:.0e})")
    if getattr(TRAINER_REGISTRY.get(trainer), "TRAINABLE", True):
        dtypes = {k: p.dtype for k, p in learnables(t).items()}
        batch = next(iter(t.train_loader_x))
        t.set_model_mode("train")
        out = t.forward_backward(batch)
        loss = float(out.get("loss", math.nan))
        row["loss"] = loss
        if not math.isfinite(loss):
            row["problems"].append(f"loss {loss}")
        changed = [f"{k} {dtypes[k]}->{p.dtype}" for k, p in learnables(t).items() if p.dtype != dtypes[k]]
        bad = [k for k, p in learnables(t).items() if not torch.isfinite(p).all()]
        if changed:
            row["problems"].append("dtype changed: " + ", ".join(changed[:3]))
        if bad:
            row["problems"].append("non-finite weights: " + ", ".join(bad[:3]))
        n = setting["steps"]
        batches = [next(iter(t.train_loader_x)) for _ in range(n)]
        sync(device)
        start = time.perf_counter()
        for b in batches:
            t.forward_backward(b)
        sync(device)
        row["train_img_s"] = n * len(batch["label"]) / (time.perf_counter() - start)
    test_images = [t.parse_batch_test(b)[0] for _, b in zip(range(setting["eval_batches"]), t.test_loader)]
    sync(device)
    start = time.perf_counter()
    t.set_model_mode("eval")
    with torch.no_grad(), t.evaluation_context():
        for x in test_images:
            with t.autocast():
                t.model_inference(x)
    sync(device)
    row["eval_img_s"] = sum(len(x) for x in test_images) / (time.perf_counter() - start)
    row["peak_mem_mib"] = (torch.cuda.max_memory_allocated() / 2**20) if device == "cuda" else None
    return row, logits


# ---- the full DeAR run through the scripts ---------------------------------------------------------
def loader_images_per_s(setting: dict) -> float:
    """The test loader alone (decode, resize, normalise), as the evaluation feeds the model."""
    t = build(setting, "ZeroshotCLIP", "fp32", Path(setting["out"]) / "steps" / "loader")
    start, n = time.perf_counter(), 0
    for batch in t.test_loader:
        n += len(batch["label"])
    return n / (time.perf_counter() - start)


def full_dear_run(setting: dict, warm: bool = False) -> dict:
    """DeAR's base2new_train and base2new_test through scripts/run.sh, timed; with `warm`, both through
    one warm worker (tools/warm.py, as a sweep's slot runs them) into another output tree."""
    tree = Path(setting["out"]) / ("output-warm" if warm else "output")
    env = {**os.environ, "DATA": setting["data"], "OUTPUT": str(tree), "PYTHON": sys.executable}
    opts = [*setting["backbone_opts"], "TRAINER.DEAR.ROLE_MAP", setting["role_map"],
            "DATALOADER.NUM_WORKERS", str(setting["workers"]), *setting["dear_run_opts"]]
    cfg = setting["configs"]["DeAR"]
    steps = ("base2new_train", "base2new_test")
    commands = {step: ["bash", "scripts/run.sh", step, "DeAR", cfg, "caltech101", "1", *opts] for step in steps}
    if warm:
        both = 'bash scripts/run.sh base2new_train "$@" && bash scripts/run.sh base2new_test "$@"'
        commands = {"warm": [sys.executable, "tools/warm.py", "--log", str(Path(setting["out"]) / "warm_worker.log"),
                             "bash", "-c", both, "-", "DeAR", cfg, "caltech101", "1", *opts]}
    times = {}
    for name, command in commands.items():
        start = time.perf_counter()
        log = Path(setting["out"]) / f"dear_{name}.log"
        with open(log, "w") as f:
            code = subprocess.run(command, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
        times[name] = time.perf_counter() - start
        if code:
            return {"problems": [f"{name} exited with {code}; see {log}"], **times}
    accuracy = {}
    for part in ("train_base", "test_new"):
        (results,) = tree.glob(f"base2new/{part}/caltech101/shots_*/DeAR/{cfg}/seed1/results.json")
        accuracy[part] = json.loads(results.read_text())["evaluations"]["test"]["metrics"]["accuracy"]
    return {"problems": [], **times, "total_s": sum(times.values()), "accuracy": accuracy}


# ---- command line ----------------------------------------------------------------------------------
def settings(args) -> dict:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.quick:
        data = make_caltech(out / "data", 8, {"train": 4, "val": 2, "test": 6}, 64)
        role_map = write_role_map(out / "role_map.json", "tiny-attr")
        configs = {name: cls.SWEEP_CONFIGS.get("tiny") for name, cls in trainer_classes()}
        return {"device": args.device, "out": str(out), "data": str(data), "shots": 4, "workers": 0, "steps": 2,
                "eval_batches": 2, "role_map": str(role_map), "configs": configs,
                "backbone_opts": ["DATALOADER.TRAIN_X.BATCH_SIZE", "4", "DATALOADER.TEST.BATCH_SIZE", "8"],
                "dear_run_opts": ["OPTIM.MAX_EPOCH", "1"]}
    data = make_caltech(out / "data", 100, {"train": 16, "val": 4, "test": 25}, 224)
    role_map = write_role_map(out / "role_map.json", "ViT-B/16")
    configs = {name: cls.SWEEP_CONFIGS.get("base2new") for name, cls in trainer_classes()}
    return {"device": args.device, "out": str(out), "data": str(data), "shots": 16, "workers": 8, "steps": 5,
            "eval_batches": 8, "role_map": str(role_map), "configs": configs,
            "backbone_opts": ["MODEL.BACKBONE.PRETRAINED", "False"], "dear_run_opts": []}


def trainer_classes():
    return [(name, TRAINER_REGISTRY.get(name)) for name in TRAINER_REGISTRY.names()
            if TRAINER_REGISTRY.get(name).SWEEP_CONFIGS]


def render(rows: list[dict]) -> str:
    from tabulate import tabulate

    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    table = [[r["trainer"], r["prec"], fmt(r.get("loss"), ".4f"), fmt(r.get("logit_gap"), ".1e"),
              fmt(r.get("train_img_s"), ".1f"), fmt(r.get("eval_img_s"), ".1f"), fmt(r.get("peak_mem_mib"), ".0f"),
              "ok" if not r["problems"] else "; ".join(r["problems"])] for r in rows]
    return tabulate(table, headers=["trainer", "prec", "loss", "logits vs fp32", "train img/s", "eval img/s",
                                    "peak MiB", "check"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu", action="store_true", help="run on this CPU (CUDA otherwise)")
    p.add_argument("--quick", action="store_true", help="tiny-attr and a few generated images: seconds")
    p.add_argument("--out", default=str(REPO / "output" / "device_check"), help="data, runs and device_check.json")
    p.add_argument("--trainers", nargs="+", help="default: every registered trainer with sweep configs")
    p.add_argument("--skip-full-run", action="store_true", help="no DeAR base-to-new run through the scripts")
    args = p.parse_args(argv)
    args.device = "cpu" if args.cpu else "cuda"
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("No CUDA device here: run on a GPU machine, or pass --cpu (with --quick for seconds)")
    setting = settings(args)
    names = args.trainers or [n for n, _ in trainer_classes()]
    precs = ("fp32", "fp16", "amp")
    rows, started = [], time.perf_counter()
    for trainer in names:
        reference = None
        node = TRAINER_REGISTRY.get(trainer).CONFIG_NODE
        for prec in precs if node and "PREC" in TRAINER_REGISTRY.get(trainer).CONFIG else ("fp32",):
            row, logits = check_one(setting, trainer, prec, reference)
            reference = logits if prec == "fp32" else reference
            rows.append(row)
            print(f"{trainer:14} {prec:5} {'ok' if not row['problems'] else row['problems']}", flush=True)
    report = {"device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
              "torch": str(torch.__version__), "quick": args.quick, "tolerance": TOLERANCE, "rows": rows}
    print(render(rows))
    if not args.skip_full_run:
        report["loader_img_s"] = loader_images_per_s(setting)
        report["dear_base2new"] = full_dear_run(setting)
        run = report["dear_base2new"]
        print(f"\nDeAR base-to-new through scripts/run.sh: {run.get('total_s', float('nan')):.1f} s "
              f"(train {run.get('base2new_train', float('nan')):.1f} s, test {run.get('base2new_test', float('nan')):.1f} s); "
              f"data loader alone {report['loader_img_s']:.0f} img/s; {run['problems'] or 'ok'}")
        warm = report["dear_base2new_warm"] = full_dear_run(setting, warm=True)
        if not warm["problems"] and not run["problems"] and warm["accuracy"] != run["accuracy"]:
            # a CPU run is deterministic; on CUDA, cuDNN's autotuner may choose other kernels per process
            (warm["problems"] if args.device == "cpu" else warm.setdefault("notes", [])).append(
                f"accuracy {warm['accuracy']} through the warm worker, {run['accuracy']} as processes")
        print(f"The same two runs through one warm worker (tools/warm.py): {warm.get('total_s', float('nan')):.1f} s; "
              f"{warm['problems'] or warm.get('notes') or 'ok, the same accuracies'}")
    report["wall_s"] = time.perf_counter() - started
    path = Path(setting["out"]) / "device_check.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"\nTable and figures: {path}")
    problems = [r for r in rows if r["problems"]] + [report[k] for k in ("dear_base2new", "dear_base2new_warm")
                                                      if report.get(k, {}).get("problems")]
    return 1 if problems else 0


if __name__ == "__main__":
    run_cli(main)
