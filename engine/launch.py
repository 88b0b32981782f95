"""CoOp's command line (train.py) as functions: flags, config merge order, the run-folder
checks, and the prediction of a command's run state that sweeps use to skip finished runs.

train.py registers the datasets and trainers, then calls `main`; nothing here imports them.
Under torchrun (engine/distributed.py) every rank runs `main`; rank 0 alone claims the output
folder, checks it, logs, and tells the other ranks whether the run goes ahead.
"""
from __future__ import annotations

import argparse
import contextlib
import shlex
from pathlib import Path

import torch

from engine import distributed
from engine.config import check_values, dataset_overrides, get_cfg, merge_file, merge_list, read_yaml
from engine.errors import ConfigError, UnknownNameError, UsageError, UserError
from engine.logging import setup_logger
from engine.registry import TRAINER_REGISTRY
from engine.run_folder import RESULTS, START_OVER_FLAG, RunFolder, check_resume_source
from engine.run_identity import describe_model, run_manifest
from engine.summary import recorded_evaluations, result_line
from engine.utils import set_random_seed
from external import load_trainer_files


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="train.py", description="CoOp's command line: train or evaluate one run")
    p.add_argument("--root", type=str, default="", help="path to dataset")
    p.add_argument("--output-dir", type=str, default=None, help="output directory")
    p.add_argument("--resume", type=str, default="", help="checkpoint directory (from which the training resumes)")
    p.add_argument("--seed", type=int, default=None, help="only non-negative values set the seed (0 included)")
    p.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    p.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    p.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    p.add_argument("--config-file", type=str, default="", help="path to config file")
    p.add_argument("--dataset-config-file", type=str, default="", help="path to config file for dataset setup")
    p.add_argument("--trainer", type=str, default="", help="name of trainer")
    p.add_argument("--backbone", type=str, default="", help="name of CNN backbone")
    p.add_argument("--head", type=str, default="", help="name of head")
    p.add_argument("--eval-only", action="store_true", help="evaluation only")
    p.add_argument("--model-dir", type=str, default="", help="load model from this directory for eval-only mode")
    p.add_argument("--load-epoch", type=int, help="load model weights at this epoch for evaluation")
    p.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    p.add_argument("--skip-finished", action="store_true",
                   help="exit at once if the output folder holds this run, finished (scripts/common.sh uses it)")
    p.add_argument(START_OVER_FLAG, action="store_true",
                   help="if the output folder holds another run, move it aside (never deleted) and start anew")
    p.add_argument("--trainer-file", action="append", default=[], metavar="PATH",
                   help="a trainer/dataset file written for Dassl, a folder of them, or their config keys (a train.py "
                        "with extend_cfg, a .yaml of defaults); repeat for several (docs/EXTENDING.md)")
    p.add_argument("opts", default=None, nargs=argparse.REMAINDER, help="modify config options using the command-line")
    return p.parse_args(argv)


def reset_cfg(cfg, args: argparse.Namespace) -> None:
    """CLI flags override the yaml files (CoOp's reset_cfg), except that --seed 0 counts."""
    if args.root:
        cfg.DATASET.ROOT = args.root
    if args.output_dir is not None:
        cfg.OUTPUT_DIR = args.output_dir
    if args.resume:
        cfg.RESUME = args.resume
    if args.seed is not None:
        cfg.SEED = args.seed
    if args.source_domains:
        cfg.DATASET.SOURCE_DOMAINS = args.source_domains
    if args.target_domains:
        cfg.DATASET.TARGET_DOMAINS = args.target_domains
    if args.transforms:
        cfg.INPUT.TRANSFORMS = args.transforms
    if args.trainer:
        cfg.TRAINER.NAME = args.trainer
    if args.backbone:
        cfg.MODEL.BACKBONE.NAME = args.backbone
    if args.head:
        cfg.MODEL.HEAD.NAME = args.head


def setup_cfg(args: argparse.Namespace):
    flags = [o for o in args.opts or [] if o.startswith("--")]
    if flags:
        raise UsageError(f"{flags[0]} comes after the KEY VALUE options, where it would be read as a config key: "
                         "put flags before the options")
    cfg = get_cfg(requested_trainer(args))
    if args.dataset_config_file:
        merge_file(cfg, args.dataset_config_file, "--dataset-config-file")
    if args.config_file:
        merge_file(cfg, args.config_file, "--config-file")
    reset_cfg(cfg, args)
    merge_list(cfg, dataset_overrides(cfg, args.opts or []), f"{cfg.TRAINER.NAME}'s per-dataset settings")
    merge_list(cfg, args.opts or [])
    cfg.freeze()
    return cfg


def requested_trainer(args: argparse.Namespace) -> str:
    """The TRAINER.NAME the command line will leave, known before the config is built: the
    config's keys depend on it where trainer files add keys (external/config_keys.py)."""
    opts = args.opts or []
    named = [value for key, value in zip(opts[0::2], opts[1::2]) if key == "TRAINER.NAME"]
    if named:
        return named[-1]
    if args.trainer:
        return args.trainer
    for path, flag in ((args.config_file, "--config-file"), (args.dataset_config_file, "--dataset-config-file")):
        node = read_yaml(path, flag).get("TRAINER") if path else None
        name = node.get("NAME") if isinstance(node, dict) else None
        if isinstance(name, str) and name:
            return name
    return ""


def trainer_class(cfg):
    try:
        return TRAINER_REGISTRY.get(cfg.TRAINER.NAME)
    except UnknownNameError as e:
        raise UnknownNameError(f"--trainer / TRAINER.NAME: {e}") from None


def check_settings(cfg, args: argparse.Namespace, trainer_cls) -> None:
    """Settings that cannot be what the user meant, refused before the output folder is claimed
    and before any data or model is loaded."""
    if not cfg.OUTPUT_DIR.strip():
        raise UsageError("--output-dir (OUTPUT_DIR) is empty: give the folder this run writes to, e.g. "
                         "--output-dir output/caltech101/CoOp/seed1")
    if Path(cfg.OUTPUT_DIR).exists() and not Path(cfg.OUTPUT_DIR).is_dir():
        raise UsageError(f"--output-dir (OUTPUT_DIR) {cfg.OUTPUT_DIR} is a file, not a folder: give another "
                         "--output-dir")
    root = Path(cfg.DATASET.ROOT).expanduser() if cfg.DATASET.ROOT else None
    if root is not None and root.exists() and not root.is_dir():
        raise UsageError(f"--root (DATASET.ROOT) {cfg.DATASET.ROOT} is a file, not a folder: give the folder that "
                         "holds the dataset folders (docs/DATASETS.md), e.g. --root $DATA")
    check_values(cfg)
    trains = not (args.eval_only or args.no_train)
    if trains and getattr(trainer_cls, "TRAINABLE", True) and cfg.OPTIM.MAX_EPOCH < 1:
        raise ConfigError(
            f"OPTIM.MAX_EPOCH {cfg.OPTIM.MAX_EPOCH}: {cfg.TRAINER.NAME} has learnable weights and this would "
            "write a finished result for an untrained model. Set OPTIM.MAX_EPOCH to 1 or more, or pass "
            "--eval-only (with --model-dir) to evaluate"
        )


GO, SKIP, STOP = "go", "skip", "stop"  # rank 0's word to the other ranks after checking the folder


def main(argv=None) -> int:
    args = parse_args(argv)
    load_trainer_files(args.trainer_file)  # also $PROMPTLAB_TRAINER_FILES; before the config gets their keys
    cfg = setup_cfg(args)
    trainer_cls = trainer_class(cfg)
    check_settings(cfg, args, trainer_cls)
    manifest = planned_manifest(args, cfg)
    with distributed.process_group(cfg.USE_CUDA):
        if not distributed.is_main():
            word = distributed.broadcast_object(None)
            if word == GO:
                run(cfg, args, trainer_cls, manifest)
            return 1 if word == STOP else 0
        with contextlib.ExitStack() as stack:
            try:
                folder = stack.enter_context(RunFolder(cfg.OUTPUT_DIR))
                skip = args.skip_finished and folder.finished(manifest)
                if not skip:
                    folder.check(manifest, start_over=args.start_over)
                    if cfg.RESUME and not args.eval_only:
                        check_resume_source(cfg.RESUME, manifest)
                    trainer_cls.check_inputs(cfg, manifest)
            except BaseException:
                distributed.broadcast_object(STOP)
                raise
            distributed.broadcast_object(SKIP if skip else GO)
            if skip:
                print(f"The results exist at {cfg.OUTPUT_DIR} (so skip this job)")
                line = result_line(cfg, recorded_evaluations(cfg.OUTPUT_DIR), args.model_dir if args.eval_only else None)
                if line:
                    print(line)
                return 0
            with setup_logger(cfg.OUTPUT_DIR) as log:
                if log.name != "log.txt":
                    print(f"This run logs to {log} (log.txt and any other log.txt-* here are earlier runs of this folder)")
                for note in folder.notes:
                    print(note)
                if distributed.world_size() > 1:
                    print(f"Training over {distributed.world_size()} processes (torchrun); this log is rank 0's")
                run(cfg, args, trainer_cls, manifest)
    return 0


def run(cfg, args: argparse.Namespace, trainer_cls, manifest: dict | None = None) -> None:
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True
    print("** Arguments **")
    for key, value in sorted(vars(args).items()):
        print(f"{key}: {value}")
    print("** Config **")
    print(cfg)
    trainer = trainer_cls(cfg)
    if manifest is not None:
        trainer.manifest = manifest
    if args.eval_only:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.test()
    elif not args.no_train:
        trainer.train()
    line = result_line(cfg, trainer.results.evaluations, args.model_dir if args.eval_only else None)
    if line and distributed.is_main():
        print(line)


def planned_manifest(args: argparse.Namespace, cfg, strict: bool = True) -> dict:
    """The manifest of the run a train.py command line describes (before it runs)."""
    model = describe_model(args.model_dir, args.load_epoch) if args.eval_only else None
    return run_manifest(cfg, "eval" if args.eval_only else "train", model, strict=strict)


def run_state(argv: list[str]) -> tuple[str, str, str]:
    """(output folder, state, detail) of a train.py command line, without running it: state is
    "finished" (results.json of this very run), "running" (its folder is locked), "mismatch" (the
    folder holds another run), "unfinished" (checkpoints or logs, no results) or "new"."""
    args = parse_args(argv)
    cfg = setup_cfg(args)
    out = Path(cfg.OUTPUT_DIR)
    folder = RunFolder(out)
    if folder.lock.held_elsewhere():
        holder = folder.lock.holder()
        return str(out), "running", holder.describe() if holder else ""
    try:
        manifest = planned_manifest(args, cfg, strict=False)
    except UserError as e:
        return str(out), "unfinished", str(e)
    if folder.finished(manifest):
        return str(out), "finished", ""
    found = folder.mismatches(manifest)
    if found:
        source, diffs = found[0]
        return str(out), "mismatch", f"{source}: " + "; ".join(diffs[:3])
    started = (out / RESULTS).exists() or any(out.glob("log.txt*"))
    return str(out), "unfinished" if started else "new", ""


PATH_FLAGS = ("--root", "--output-dir", "--model-dir", "--resume", "--config-file", "--dataset-config-file")


def command_argv(line: str, cwd: Path) -> list[str]:
    """train.py's arguments from a `train.py ...` line that scripts/common.sh prints (PRINT_RUNS),
    with relative folders made absolute against `cwd`, where the command would run."""
    words = shlex.split(line)
    if not words or Path(words[0]).name != "train.py":
        raise ValueError(f"not a train.py command: {line!r}")
    argv = words[1:]
    for i, word in enumerate(argv[:-1]):
        if word in PATH_FLAGS and argv[i + 1] and not Path(argv[i + 1]).is_absolute():
            argv[i + 1] = str(Path(cwd) / argv[i + 1])
    return argv
