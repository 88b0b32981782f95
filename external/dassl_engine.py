"""`dassl.engine`: Dassl's TrainerX on promptlab's lifecycle (engine/trainer.py).

A trainer file subclasses this TrainerX and registers itself; it then runs through train.py,
the scripts and the sweep like a built-in trainer: promptlab's loop, logging, checkpoints of
learnable tensors only, resume, and results.json. What Dassl's semantics add on top:
- forward_backward steps the LR itself (`update_lr()` at an epoch's last batch), so the engine
  does not (ENGINE_STEPS_LR);
- model_backward_and_update = zero_grad, a finite-loss check, backward, step (no GradScaler:
  trainer files that use amp drive their own);
- parse_batch_train returns (images, labels, domains); save_model takes is_best;
- a trainer file's own load_model still sets the epoch results.json reports.
Without CUDA, the file's CUDA/fp16 calls run on the CPU in fp32 (external/cpu_fallback.py).
The log names the class, its file and the clip package it imports; the run manifest holds
their digests (`code_identity`). What a file assumes of its own world (a template table by
dataset name, a forked Dassl's method) ends in one error naming the line (external/assumptions.py).
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch

from engine.checkpoint import load_checkpoint
from engine.trainer import BEST, epoch_file
from engine.trainer import TrainerX as EngineTrainerX
from engine.registry import TRAINER_REGISTRY as ENGINE_TRAINERS
from external import cpu_fallback
from external.assumptions import explained, supply_templates
from external.dassl_utils import Registry
from external.loader import SHADOWED, check_config_nodes, code_identity, provenance

TRAINER_REGISTRY = Registry("TRAINER", ENGINE_TRAINERS)

__all__ = ["TRAINER_REGISTRY", "TrainerX", "build_trainer"]


def _reports_loaded_epoch(load_model):
    """Wrap a trainer file's load_model: afterwards, read the epoch of the checkpoint Dassl's
    convention says it loaded (model.pth.tar-<epoch>, else model-best.pth.tar)."""

    @functools.wraps(load_model)
    def wrapper(self, directory, epoch=None):
        load_model(self, directory, epoch)
        names = self.get_model_names()
        if directory and names:
            path = Path(directory) / names[0] / (epoch_file(epoch) if epoch is not None else BEST)
            if path.is_file():
                self.epochs_done = load_checkpoint(path)["epoch"]

    return wrapper


def _explained(method):
    """A trainer file's own train/test/load_model, its errors explained (external/assumptions.py)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with explained(self.cfg):
            return method(self, *args, **kwargs)

    return wrapper


class TrainerX(EngineTrainerX):
    """Dassl's TrainerX (see the module docstring)."""

    ENGINE_STEPS_LR = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "load_model" in cls.__dict__:
            cls.load_model = _reports_loaded_epoch(cls.__dict__["load_model"])
        for name in ("train", "test", "load_model"):
            if name in cls.__dict__:
                setattr(cls, name, _explained(cls.__dict__[name]))

    def __init__(self, cfg):
        check_config_nodes(type(self), cfg)
        self._announce(cfg)
        if not torch.cuda.is_available():
            cpu_fallback.install()
        supply_templates(cfg)
        with explained(cfg):
            super().__init__(cfg)

    @classmethod
    def code_identity(cls) -> dict:
        return code_identity(cls)

    def _announce(self, cfg) -> None:
        code = code_identity(type(self))
        digest = code["sha256"][code["file"]]
        replaces = ("; it replaces promptlab's built-in trainer of that name in this process"
                    if ("TRAINER", cfg.TRAINER.NAME) in SHADOWED else "")
        clip = "promptlab's clip layer" if code["clip"] == "promptlab" else code["clip"]
        print(f"Trainer {cfg.TRAINER.NAME}: class {code['class']} of {code['file']} (sha256 {digest[:12]}), "
              f"clip from {clip}{replaces}")

    def train(self) -> None:
        with explained(self.cfg):
            super().train()

    def test(self, split=None):
        with explained(self.cfg):
            return super().test(split)

    def build_data_loader(self) -> None:
        super().build_data_loader()
        self.train_loader_u = self.dm.train_loader_u = None
        self.num_source_domains = self.dm.num_source_domains = len(self.cfg.DATASET.SOURCE_DOMAINS)

    def run_metadata(self) -> dict:
        return {**super().run_metadata(), "external": provenance(type(self))}

    # ---- Dassl's update steps ---------------------------------------------------------------
    def detect_anomaly(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss).all():
            raise FloatingPointError("Loss is infinite or NaN!")

    def model_zero_grad(self, names=None) -> None:
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].zero_grad()

    def model_backward(self, loss: torch.Tensor) -> None:
        self.detect_anomaly(loss)
        loss.backward()

    def model_update(self, names=None) -> None:
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].step()

    def model_backward_and_update(self, loss: torch.Tensor, names=None) -> None:
        self.model_zero_grad(names)
        self.model_backward(loss)
        self.model_update(names)

    def parse_batch_train(self, batch: dict):
        return batch["img"].to(self.device), batch["label"].to(self.device), batch["domain"].to(self.device)

    # ---- Dassl's signatures -------------------------------------------------------------------
    def save_model(self, epoch: int, directory: str, is_best: bool = False, val_result=None,
                   model_name: str = "") -> None:
        super().save_model(epoch, directory, val_result=val_result, model_name=model_name)
        if is_best:
            super().save_model(epoch, directory, val_result=val_result, model_name=BEST)

    def init_writer(self, log_dir: str | None = None) -> None:
        """TensorBoard goes to OUTPUT_DIR/tensorboard whatever `log_dir` says, as in Dassl's runs."""
        super().init_writer()

    def close_writer(self) -> None:
        if self.writer is not None:
            self.writer.close()


def build_trainer(cfg):
    if cfg.VERBOSE:
        print(f"Loading trainer: {cfg.TRAINER.NAME}")
    return TRAINER_REGISTRY.get(cfg.TRAINER.NAME)(cfg)
