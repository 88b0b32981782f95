"""Dassl's TrainerX lifecycle: hooks, log lines, checkpoints, resume, evaluation.

Under torchrun (engine/distributed.py) the same lifecycle runs on every rank: each trains on its
shard of the global batch, `model_backward_and_update` averages the gradients over the ranks
(weighted by shard size) before the optimizers step, the logged losses are global-batch means,
evaluations gather every rank's predictions, and rank 0 alone writes checkpoints, results.json
and tensorboard. Trainers need no change as long as their loss is a mean over the batch's
samples plus terms that do not depend on the samples (docs/SCALING.md).
"""
from __future__ import annotations

import contextlib
import datetime
import math
import time
from pathlib import Path
from typing import ClassVar, Iterator

import numpy as np
import torch
import yaml
from torch import nn

from engine import distributed
from engine.checkpoint import (
    BEST, DIGEST_SUFFIX, CheckpointDamagedError, epoch_checkpoints, epoch_file, latest_checkpoint, learnable_state,
    load_checkpoint, load_learnable_state, remove_tensors, resolve_model_file, save_checkpoint,
)
from engine.data.manager import DataManager
from engine.errors import (
    CheckpointError, ConfigError, MissingFileError, RunMismatchError, TrainingDivergedError,
)
from engine.evaluator import build_evaluator
from engine.logging import ResultsWriter
from engine.optim import warmup_note
from engine.progress import Progress, progress
from engine.run_folder import checkpoint_manifest
from engine.run_identity import MODEL_FIELDS, differences, mismatch_message, run_manifest
from engine.utils import AverageMeter, MetricMeter, rng_state, set_rng_state

KEEP_EPOCHS = 2  # epoch checkpoints kept for resuming: the newest, and one to fall back to if it is damaged


def scalar(value) -> float:
    """A logged value as a float (0.0 for what is not a number: only numbers are checked)."""
    if isinstance(value, (int, float)) or (torch.is_tensor(value) and value.numel() == 1):
        return float(value)
    return 0.0


class TrainerX:
    """Supervised trainer on train_x, with Dassl's hooks and output tree.

    Subclasses implement `build_model` (calling `register_model` for what trains) and
    `forward_backward`; they declare their config node with CONFIG_NODE / CONFIG.
    """

    CONFIG_NODE: ClassVar[str | None] = None
    CONFIG: ClassVar[dict] = {}
    # tools/sweep.py: the config (configs/trainers/<Trainer>/<name>.yaml) the method's scripts
    # use, by protocol: "base2new", "xd" (also "dg", which evaluates the xd model unless a "dg"
    # key says otherwise), "fewshot", and "tiny" (the tiny-attr config for the attribute world,
    # `--config-set tiny`). "<key>:<dataset>" overrides a key for the dataset the run trains on
    # (e.g. "base2new:imagenet"), then "<key>:<K>shot" for K shots (e.g. "fewshot:1shot").
    # A missing key makes the sweep ask for --configs.
    SWEEP_CONFIGS: ClassVar[dict[str, str]] = {}
    # False for methods without learnable weights: sweeps evaluate them (--eval-only) instead of
    # training, with no model dir (see tools/sweep.py for where those runs land).
    TRAINABLE: ClassVar[bool] = True
    # False where forward_backward steps the schedulers itself, as Dassl's trainers do at an
    # epoch's last batch (external/dassl_engine.py); the engine then leaves them alone.
    ENGINE_STEPS_LR: ClassVar[bool] = True
    # Keys of the trainer's config node (prefixes) that say where a training input came from, not
    # what the loaded model computes (DeAR: ROLE_MAP, ANALYSIS_*): an evaluation that differs from
    # its model's training run in them gets no note.
    EVAL_SILENT_KEYS: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def sweep_opts(cls, step: str, dataset: str, model_dir: str) -> list[str]:
        """KEY VALUE pairs the method's scripts add to one scripts/common.sh step (`step` is the
        function name, e.g. "base2new_test"; `model_dir` the run it evaluates, "" if none), so
        that a sweep issues exactly the scripts' command."""
        return []

    @classmethod
    def check_inputs(cls, cfg, manifest: dict) -> None:
        """Inputs a run needs beyond its data and backbone (e.g. DeAR's role map), checked from the
        config before the run logs anything into its folder (train.py), so that a mistake there
        leaves no failed log behind; `check_cfg` may check them again for trainers built directly."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.device = torch.device("cuda" if torch.cuda.is_available() and cfg.USE_CUDA else "cpu")
        self.output_dir = cfg.OUTPUT_DIR
        self.start_epoch = self.epoch = 0
        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self._models: dict[str, nn.Module] = {}
        self._optims: dict[str, torch.optim.Optimizer | None] = {}
        self._scheds: dict[str, torch.optim.lr_scheduler.LRScheduler | None] = {}
        self.scaler = torch.amp.GradScaler(enabled=False)
        self.writer = None
        self.epochs_done = 0
        self.time_start = time.time()
        # What this run is (engine/run_identity.py); train.py replaces it for evaluations.
        self.manifest = run_manifest(cfg, "train")
        self.check_cfg(cfg)
        self.build_data_loader()
        self.build_model()
        self.evaluator = build_evaluator(cfg, lab2cname=self.lab2cname)
        self.results = ResultsWriter(cfg.OUTPUT_DIR, lambda: {**self.run_metadata(), "manifest": self.manifest})
        self.best_result = -np.inf
        self.batch_share = 1.0  # this rank's share of the current global batch (run_epoch)
        self.in_training = False  # while True, evaluations are recorded but results.json is not written

    # ---- construction hooks -------------------------------------------------
    def check_cfg(self, cfg) -> None:
        """Validate method-specific keys before anything heavy is built."""

    def build_data_loader(self) -> None:
        self.dm = DataManager(self.cfg)
        self.train_loader_x = self.dm.train_loader_x
        self.val_loader = self.dm.val_loader
        self.test_loader = self.dm.test_loader
        self.num_classes = self.dm.num_classes
        self.lab2cname = self.dm.lab2cname

    def build_model(self) -> None:
        raise NotImplementedError

    def register_model(self, name: str, model: nn.Module, optim=None, sched=None) -> None:
        if name in self._models:
            raise KeyError(f"Model {name!r} is already registered")
        self._models[name] = model
        self._optims[name] = optim
        self._scheds[name] = sched

    def get_model_names(self, names=None) -> list[str]:
        if names is None:
            return list(self._models)
        names = [names] if isinstance(names, str) else list(names)
        unknown = [n for n in names if n not in self._models]
        if unknown:
            raise KeyError(f"Unknown model names {unknown}; registered: {list(self._models)}")
        return names

    def run_metadata(self) -> dict:
        cfg = self.cfg
        return {
            "trainer": cfg.TRAINER.NAME,
            "dataset": cfg.DATASET.NAME,
            "subsample": cfg.DATASET.SUBSAMPLE_CLASSES,
            "num_shots": cfg.DATASET.NUM_SHOTS,
            "seed": cfg.SEED,
            "backbone": cfg.MODEL.BACKBONE.NAME,
            "output_dir": str(Path(cfg.OUTPUT_DIR).resolve()),
            "processes": distributed.world_size(),  # torchrun ranks that trained or evaluated it
            "config": yaml.safe_load(cfg.dump()),
        }

    # ---- checkpoints ----------------------------------------------------------
    def save_model(self, epoch: int, directory: str, val_result=None, model_name: str = "") -> None:
        for name in self.get_model_names():
            optim, sched = self._optims[name], self._scheds[name]
            payload = {
                "state_dict": learnable_state(self._models[name]),
                "epoch": epoch + 1,
                "optimizer": optim.state_dict() if optim else None,
                "scheduler": sched.state_dict() if sched else None,
                "val_result": val_result,
                "rng": rng_state(),
                "meta": {"trainer": self.cfg.TRAINER.NAME, "model": name, "torch": str(torch.__version__),
                         "manifest": self.manifest},
            }
            save_checkpoint(payload, Path(directory) / name, model_name or epoch_file(epoch + 1),
                            update_pointer=not model_name)

    def remove_checkpoint(self, directory: str, epochs: int) -> None:
        """Delete the resume checkpoint written after `epochs` epochs (and any side files a trainer
        keeps with it)."""
        for name in self.get_model_names():
            remove_tensors(Path(directory) / name / epoch_file(epochs))

    def _remove_old_checkpoints(self, epoch: int) -> None:
        """Keep the KEEP_EPOCHS newest epoch checkpoints, plus those TRAIN.CHECKPOINT_FREQ keeps."""
        old = epoch + 1 - KEEP_EPOCHS  # the file that just fell out of the kept window
        freq = self.cfg.TRAIN.CHECKPOINT_FREQ
        if old < 1 or (freq > 0 and old % freq == 0):
            return
        self.remove_checkpoint(self.output_dir, old)

    def load_resume_extras(self, directory: str, epochs: int) -> None:
        """Trainer state kept beside the checkpoint of `epochs` epochs (e.g. PromptSRC's GPA sum);
        raise CheckpointDamagedError if it is unreadable, so that resume falls back an epoch."""

    def _resume_candidates(self, directory: str) -> list[int]:
        """Epochs that every model has a checkpoint for, newest first (the pointer is checked)."""
        common = None
        for name in self.get_model_names():
            folder = Path(directory) / name
            latest_checkpoint(folder)  # refuses a pointer that leaves the folder
            epochs = set(epoch_checkpoints(folder))
            common = epochs if common is None else common & epochs
        return sorted(common or (), reverse=True)

    def _check_checkpoint_identity(self, path: Path, ckpt: dict) -> None:
        diffs = differences(checkpoint_manifest(ckpt), self.manifest)
        if diffs:
            raise RunMismatchError(mismatch_message(f"Checkpoint {path}", diffs, self.output_dir, "--start-over"))

    def resume_model_if_exist(self, directory: str) -> int:
        """Load the newest readable epoch checkpoint of every model; a damaged one is reported by
        name and the previous epoch is used instead."""
        names = self.get_model_names()
        epochs = self._resume_candidates(directory) if names else []
        if not epochs:
            print("No checkpoint found, train from scratch")
            return 0
        print(f"Found checkpoint at {directory} (will resume training)")
        for epoch in epochs:
            try:
                ckpts = {n: load_checkpoint(Path(directory) / n / epoch_file(epoch)) for n in names}
                self.load_resume_extras(directory, epoch)
            except CheckpointDamagedError as e:
                print(f"Warning: {e}; trying the previous epoch's checkpoint")
                continue
            return self._restore(directory, epoch, ckpts)
        raise CheckpointDamagedError(
            f"Every checkpoint in {directory} is damaged ({', '.join(epoch_file(e) for e in epochs)}). "
            "Rerun with --start-over to move them aside and train from scratch"
        )

    def _restore(self, directory: str, epoch: int, ckpts: dict[str, dict]) -> int:
        for name, ckpt in ckpts.items():
            path = Path(directory) / name / epoch_file(epoch)
            self._check_checkpoint_identity(path, ckpt)
            load_learnable_state(self._models[name], ckpt["state_dict"], str(path))
            if self._optims[name] is not None and ckpt["optimizer"] is not None:
                self._optims[name].load_state_dict(ckpt["optimizer"])
            if self._scheds[name] is not None and ckpt["scheduler"] is not None:
                self._scheds[name].load_state_dict(ckpt["scheduler"])
            set_rng_state(ckpt["rng"])
            print(f"Loaded {path}")
            best = Path(directory) / name / BEST
            if best.is_file():  # best_val keeps comparing against the best epoch before the interruption
                self.best_result = load_checkpoint(best)["val_result"]
        self.epochs_done = ckpts[next(iter(ckpts))]["epoch"]
        print(f"Previous epoch: {self.epochs_done}")
        return self.epochs_done

    def load_model(self, directory: str | None, epoch: int | None = None) -> None:
        """Load learnable weights for evaluation: epoch N, else model-best, else the newest."""
        names = self.get_model_names()
        if not names:
            print("Note that load_model() is skipped as this trainer has no learnable weights")
            return
        if not directory:
            raise ConfigError(
                f"{self.cfg.TRAINER.NAME} has learnable weights: --eval-only needs --model-dir "
                "<the OUTPUT_DIR of a finished training run> (and optionally --load-epoch N)"
            )
        for name in names:
            model_dir = Path(directory) / name
            path = resolve_model_file(model_dir, epoch)
            if not path.is_file():
                found = sorted(p.name for p in model_dir.glob("model*") if not p.name.endswith(DIGEST_SUFFIX)) \
                    if model_dir.is_dir() else []
                raise MissingFileError(f'Model not found at "{path}". Checkpoints there: {found or "none"}')
            ckpt = load_checkpoint(path)
            self._check_model_identity(path, ckpt)
            load_learnable_state(self._models[name], ckpt["state_dict"], str(path))
            self.epochs_done = ckpt["epoch"]
            print(f'Loading weights to {name} from "{path}" (epoch = {ckpt["epoch"]})')

    def _check_model_identity(self, path: Path, ckpt: dict) -> None:
        """A loaded model must come from this trainer on this backbone; other method settings may
        differ (e.g. an evaluation-time switch) and are listed."""
        meta = ckpt.get("meta")
        if not isinstance(meta, dict) or "manifest" not in meta:
            print(f"Note: {path} records no run manifest (written by other code, or before manifests); "
                  "which run trained it cannot be checked")
            return
        recorded = meta["manifest"]
        diffs = differences(recorded, self.manifest, MODEL_FIELDS)
        if diffs:
            raise RunMismatchError(mismatch_message(f"Model {path}", diffs, None, "--start-over"))
        node = f"TRAINER.{self.CONFIG_NODE}." if self.CONFIG_NODE else None
        config_diffs = [d for d in differences(recorded, self.manifest, ("config",))
                        if node and d.startswith(f"config.{node}")
                        and not d.removeprefix(f"config.{node}").startswith(self.EVAL_SILENT_KEYS)]
        for d in config_diffs:
            print(f"Note: {d.removeprefix('config.').replace('(recorded)', '(trained with)')}")

    # ---- training loop --------------------------------------------------------
    def train(self) -> None:
        self.in_training = True
        self.before_train()
        for self.epoch in range(self.start_epoch, self.max_epoch):
            self.before_epoch()
            with self.epoch_progress():
                self.run_epoch()
            self.after_epoch()
        self.after_train()

    def before_train(self) -> None:
        directory = self.cfg.RESUME or self.output_dir
        self.start_epoch = self.resume_model_if_exist(directory)
        note = warmup_note(self.cfg.OPTIM)
        if note:
            print(note)
        self.init_writer()
        self.time_start = time.time()

    def after_train(self) -> None:
        print("Finish training")
        self.in_training = False
        if self.cfg.TEST.NO_TEST:
            if distributed.is_main():
                self.results.write()  # nothing to evaluate, but the run is finished
        else:
            if self.cfg.TEST.FINAL_MODEL == "best_val":
                print("Deploy the model with the best val performance")
                self.load_model(self.output_dir)
            else:
                print("Deploy the last-epoch model")
            self.test()
        elapsed = datetime.timedelta(seconds=round(time.time() - self.time_start))
        print(f"Elapsed: {elapsed}")
        if self.writer is not None:
            self.writer.close()

    def before_epoch(self) -> None:
        """Per-epoch setup (e.g. PromptSRC's aggregation weights)."""

    def after_epoch(self) -> None:
        self.epochs_done = self.epoch + 1
        last_epoch = self.epoch + 1 == self.max_epoch
        main = distributed.is_main()
        if not self.cfg.TEST.NO_TEST and self.cfg.TEST.FINAL_MODEL == "best_val":
            result = self.test(split="val")
            if result > self.best_result:
                self.best_result = result
                if main:
                    self.save_model(self.epoch, self.output_dir, val_result=result, model_name=BEST)
        if main:
            self.save_model(self.epoch, self.output_dir)
            self._remove_old_checkpoints(self.epoch)
        distributed.barrier()  # no rank reads a checkpoint (best_val's deployment) before it is written
        if last_epoch:
            self.set_model_mode("eval")

    def epoch_progress(self) -> Progress:
        """Progress lines for an epoch, with the ETA of the whole run, at least every 30 s whatever
        the output (engine/progress.py); run_epoch counts its batches and prints its own lines."""
        n = len(self.train_loader_x)
        self.progress = Progress(f"epoch [{self.epoch + 1}/{self.max_epoch}]", n, after=(self.max_epoch - self.epoch - 1) * n)
        return self.progress

    def run_epoch(self) -> None:
        self.set_model_mode("train")
        losses, batch_time, data_time = MetricMeter(), AverageMeter(), AverageMeter()
        self.num_batches = len(self.train_loader_x)
        set_epoch = getattr(self.train_loader_x.batch_sampler, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(self.epoch)
        end = time.time()
        for self.batch_idx, batch in enumerate(self.train_loader_x):
            data_time.update(time.time() - end)
            self.batch_share = self.shard_share(batch)
            summary = distributed.weighted_mean(self.forward_backward(batch), self.batch_share)
            self.check_finite(summary)
            losses.update(summary)
            batch_time.update(time.time() - end)
            self.progress.step()
            freq = self.cfg.TRAIN.PRINT_FREQ
            if (self.batch_idx + 1) % freq == 0 or self.num_batches < freq or self.progress.due():
                self.progress.printed()
                remaining = self.num_batches - self.batch_idx - 1 + (self.max_epoch - self.epoch - 1) * self.num_batches
                eta = datetime.timedelta(seconds=int(batch_time.avg * remaining))
                print(
                    f"epoch [{self.epoch + 1}/{self.max_epoch}] batch [{self.batch_idx + 1}/{self.num_batches}] "
                    f"time {batch_time.val:.3f} ({batch_time.avg:.3f}) data {data_time.val:.3f} ({data_time.avg:.3f}) "
                    f"{losses} lr {self.get_current_lr():.4e} eta {eta}"
                )
            n_iter = self.epoch * self.num_batches + self.batch_idx
            for k, meter in losses.meters.items():
                self.write_scalar(f"train/{k}", meter.avg, n_iter)
            self.write_scalar("train/lr", self.get_current_lr(), n_iter)
            end = time.time()
        if self.ENGINE_STEPS_LR:
            self.update_lr()

    # ---- per-batch hooks ------------------------------------------------------
    def forward_backward(self, batch: dict) -> dict:
        raise NotImplementedError

    def check_finite(self, summary: dict) -> None:
        """Stop a diverged run: a non-finite logged value (a loss) or learnable weight. Nothing of
        this epoch is saved, so the newest checkpoint stays the last good one, and no results.json
        is written. A step that amp's GradScaler skipped for overflowing gradients leaves the loss
        and the weights finite: it is not divergence and passes."""
        bad = {k: v for k, v in summary.items() if not math.isfinite(scalar(v))}
        if not bad:
            learnable = {f"{name}.{key}": p for name in self.get_model_names()
                         for key, p in self._models[name].named_parameters() if p.requires_grad}
            finite = torch.stack([torch.isfinite(p).all() for p in learnable.values()]) if learnable else None
            if finite is None or bool(finite.all()):  # one device sync per step
                return
            bad = {key: "non-finite" for key, ok in zip(learnable, finite.tolist()) if not ok}
        where = f"epoch {self.epoch + 1}/{self.max_epoch}, batch {self.batch_idx + 1}/{self.num_batches}"
        shown = ", ".join(f"{k} {v}" for k, v in list(bad.items())[:4])
        saved = self.newest_saved_epoch()
        kept = (f"the newest checkpoint is epoch {saved}'s, the last with finite weights" if saved else
                "no checkpoint was written")
        raise TrainingDivergedError(
            f"Training diverged at {where}: {shown}.\n"
            f"The run stops here without results.json; {kept} (in {self.output_dir}).\n"
            f"Change what makes it diverge (e.g. a lower OPTIM.LR, now {self.cfg.OPTIM.LR}; the warmup "
            "OPTIM.WARMUP_*), then rerun with --start-over"
        )

    def newest_saved_epoch(self) -> int:
        """The newest epoch every registered model has a checkpoint of in the output folder (0: none)."""
        try:
            epochs = self._resume_candidates(self.output_dir)
        except CheckpointError:
            return 0
        return epochs[0] if epochs else 0

    @staticmethod
    def shard_share(batch: dict) -> float:
        """This rank's share of the global batch (1.0 in one process): the weight of its gradients
        and logged values when the ranks are combined."""
        if distributed.world_size() == 1:
            return 1.0
        local = len(batch["label"])
        return local / distributed.all_sum([local])[0]

    def parse_batch_train(self, batch: dict):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def parse_batch_test(self, batch: dict):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def model_inference(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def evaluation_batches(self, loader) -> Iterator[tuple[object, torch.Tensor]]:
        """(model input, labels) per evaluation batch: parse_batch_test's images. A trainer may
        give precomputed image features instead (trainers/common.py), which its model_inference
        then accepts."""
        for batch in progress(loader, "Evaluation"):
            yield self.parse_batch_test(batch)

    def autocast(self):
        """Mixed-precision context for forward passes (a no-op unless a trainer enables amp)."""
        return contextlib.nullcontext()

    def evaluation_context(self):
        """Entered once around an evaluation, e.g. to encode class prompts once, not per batch."""
        return contextlib.nullcontext()

    def model_backward_and_update(self, loss: torch.Tensor, names=None) -> None:
        names = self.get_model_names(names)
        for name in names:
            self._optims[name].zero_grad()
        self.scaler.scale(loss).backward()
        if distributed.world_size() > 1:
            params = [p for name in names for group in self._optims[name].param_groups for p in group["params"]]
            distributed.reduce_gradients(params, self.batch_share)
        for name in names:
            self.scaler.step(self._optims[name])
        self.scaler.update()

    def update_lr(self, names=None) -> None:
        for name in self.get_model_names(names):
            if self._scheds[name] is not None:
                self._scheds[name].step()

    def get_current_lr(self, names=None) -> float:
        name = self.get_model_names(names)[0]
        return self._optims[name].param_groups[0]["lr"]

    def set_model_mode(self, mode: str = "train", names=None) -> None:
        for name in self.get_model_names(names):
            self._models[name].train(mode == "train")

    # ---- evaluation -----------------------------------------------------------
    @torch.no_grad()
    def test(self, split: str | None = None) -> float:
        self.set_model_mode("eval")
        self.evaluator.reset()
        split = split or self.cfg.TEST.SPLIT
        loader = self.val_loader if split == "val" and self.val_loader is not None else self.test_loader
        print(f"Evaluate on the *{split}* set")
        started = time.time()
        with self.evaluation_context():
            for inputs, labels in self.evaluation_batches(loader):
                with self.autocast():
                    logits = self.model_inference(inputs)
                self.evaluator.process(logits, labels)
        if distributed.world_size() > 1:
            self.evaluator.gather()
        results = self.evaluator.evaluate()
        for k, v in results.items():
            self.write_scalar(f"{split}/{k}", v, self.epoch)
        self.results.record(
            split, results,
            epoch=self.epochs_done,
            wall_time_s=round(time.time() - self.time_start, 3),
            eval_time_s=round(time.time() - started, 3),
        )
        if not self.in_training and distributed.is_main():
            self.results.write()
        return next(iter(results.values()))

    # ---- tensorboard ----------------------------------------------------------
    def init_writer(self) -> None:
        """Training curves for tensorboard, when the optional `tensorboard` package is installed
        (pip install tensorboard); the log says which."""
        if not distributed.is_main():
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            print("Training curves: not written (tensorboard is not installed: pip install tensorboard)")
            return
        folder = Path(self.output_dir) / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(folder))
        print(f"Training curves: {folder} (view: tensorboard --logdir {folder.parent})")

    def write_scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)
