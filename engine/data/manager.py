"""Data manager: dataset from the registry, Dassl's loaders and summary table.

Training batches come from engine/data/samplers.py: the order is drawn from (seed, epoch) and
each image's augmentation from (seed, epoch, index), so a run gives the same batches in one
process or split over torchrun's ranks (each loads its shard), and on resume. Evaluation loaders
give each rank a contiguous shard of the split; the evaluator gathers the predictions.
"""
from __future__ import annotations

import os

import torch
from tabulate import tabulate
from torch.utils.data import DataLoader, Dataset

from engine import distributed
from engine.data.base import DATASET_REGISTRY, Datum, DatasetBase
from engine.data.images import read_image
from engine.data.samplers import EpochBatchSampler, ShardSampler
from engine.data.transforms import build_test_transform, build_train_transform
from engine.errors import ConfigError

SAMPLERS = ("RandomSampler", "SequentialSampler")  # training order: shuffled per epoch, or as listed


class DatasetWrapper(Dataset):
    """Items as Dassl's batch dicts. A key (index, seed) transforms the image with the torch RNG
    seeded by `seed` (training: random crops and flips); the global RNG is left as it was."""

    def __init__(self, items: list[Datum], transform):
        self.items = items
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, seed = key if isinstance(key, tuple) else (key, None)
        item = self.items[index]
        image = read_image(item.impath)
        if seed is None:
            image = self.transform(image)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                image = self.transform(image)
        return {
            "img": image,
            "label": item.label,
            "domain": item.domain,
            "impath": item.impath,
            "index": index,
        }


def available_cores() -> int:
    """The cores this process may run on (its affinity: a SLURM allocation, taskset, a container)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def num_workers(cfg) -> int:
    """DATALOADER.NUM_WORKERS, at most one per available core (more only contend for them)."""
    return min(cfg.DATALOADER.NUM_WORKERS, available_cores())


def loader_args(cfg) -> dict:
    return {"num_workers": num_workers(cfg), "pin_memory": torch.cuda.is_available() and cfg.USE_CUDA}


def check_sampler(sampler: str) -> None:
    if sampler not in SAMPLERS:
        raise ConfigError(f"DATALOADER sampler: unsupported {sampler!r}; choose from {sorted(SAMPLERS)}")


def build_train_loader(cfg, items: list[Datum], transform, seed: int) -> DataLoader:
    """This rank's shards of the global batches (all of each batch in one process)."""
    sampler, batch_size = cfg.DATALOADER.TRAIN_X.SAMPLER, cfg.DATALOADER.TRAIN_X.BATCH_SIZE
    check_sampler(sampler)
    batches = EpochBatchSampler(len(items), batch_size, drop_last=len(items) >= batch_size,
                                shuffle=sampler == "RandomSampler", seed=seed,
                                rank=distributed.rank(), world=distributed.world_size())
    return DataLoader(DatasetWrapper(items, transform), batch_sampler=batches, **loader_args(cfg))


def build_test_loader(cfg, items: list[Datum], transform) -> DataLoader:
    """This rank's contiguous shard of an evaluation split, in order (the metrics do not depend on it)."""
    check_sampler(cfg.DATALOADER.TEST.SAMPLER)
    return DataLoader(DatasetWrapper(items, transform), batch_size=cfg.DATALOADER.TEST.BATCH_SIZE,
                      sampler=ShardSampler(len(items), distributed.rank(), distributed.world_size()),
                      **loader_args(cfg))


def data_seed(cfg) -> int:
    """The seed of the training order and augmentations: SEED, or (SEED < 0) one drawn for the run,
    rank 0's on every rank."""
    if cfg.SEED >= 0:
        return cfg.SEED
    return distributed.broadcast_object(int(torch.randint(2**62, ()).item()))


class DataManager:
    """Builds the dataset named by DATASET.NAME and its train/val/test loaders; `tfm_train` /
    `tfm_test` replace the transforms the config describes (Dassl's custom_tfm_train/test)."""

    def __init__(self, cfg, tfm_train=None, tfm_test=None):
        if not cfg.DATASET.NAME:
            raise ConfigError("DATASET.NAME is empty: pass --dataset-config-file configs/datasets/<name>.yaml")
        self.dataset: DatasetBase = DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)
        tfm_train = tfm_train or build_train_transform(cfg)
        tfm_test = tfm_test or build_test_transform(cfg)
        d = self.dataset
        self.train_loader_x = build_train_loader(cfg, d.train_x, tfm_train, data_seed(cfg)) if d.train_x else None
        self.val_loader = build_test_loader(cfg, d.val, tfm_test) if d.val else None
        self.test_loader = build_test_loader(cfg, d.test, tfm_test)
        self.num_classes = d.num_classes
        self.lab2cname = d.lab2cname
        self.show_summary(cfg)
        if num_workers(cfg) < cfg.DATALOADER.NUM_WORKERS:
            print(f"Data-loader workers: {num_workers(cfg)} (DATALOADER.NUM_WORKERS {cfg.DATALOADER.NUM_WORKERS}, "
                  f"capped at the {available_cores()} cores available)")

    def show_summary(self, cfg) -> None:
        d = self.dataset
        rows = [["Dataset", cfg.DATASET.NAME], ["# classes", f"{d.num_classes:,}"]]
        rows.append(["# train_x", f"{len(d.train_x):,}"])
        if d.val:
            rows.append(["# val", f"{len(d.val):,}"])
        rows.append(["# test", f"{len(d.test):,}"])
        print(tabulate(rows))
