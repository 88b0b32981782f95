"""Data manager: dataset from the registry, Dassl's loaders and summary table."""
from __future__ import annotations

import torch
from PIL import Image, UnidentifiedImageError
from tabulate import tabulate
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler

from engine.data.base import DATASET_REGISTRY, Datum, DatasetBase
from engine.data.transforms import build_test_transform, build_train_transform
from engine.errors import ConfigError, DataError

SAMPLERS = {"RandomSampler": RandomSampler, "SequentialSampler": SequentialSampler}


def read_image(path: str) -> Image.Image:
    """Open as RGB; a corrupt or unreadable file raises naming the file (Dassl retried forever)."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, UnidentifiedImageError, SyntaxError) as e:
        raise DataError(f"Cannot read image {path}: {e}. Replace the file or remove it from the split.") from e


class DatasetWrapper(Dataset):
    def __init__(self, items: list[Datum], transform):
        self.items = items
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        return {
            "img": self.transform(read_image(item.impath)),
            "label": item.label,
            "domain": item.domain,
            "impath": item.impath,
            "index": index,
        }


def build_loader(cfg, items: list[Datum], sampler: str, batch_size: int, transform, is_train: bool) -> DataLoader:
    if sampler not in SAMPLERS:
        raise ConfigError(f"DATALOADER sampler: unsupported {sampler!r}; choose from {sorted(SAMPLERS)}")
    wrapped = DatasetWrapper(items, transform)
    return DataLoader(
        wrapped,
        batch_size=batch_size,
        sampler=SAMPLERS[sampler](wrapped),
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        drop_last=is_train and len(items) >= batch_size,
        pin_memory=torch.cuda.is_available() and cfg.USE_CUDA,
    )


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
        self.train_loader_x = (
            build_loader(cfg, d.train_x, cfg.DATALOADER.TRAIN_X.SAMPLER, cfg.DATALOADER.TRAIN_X.BATCH_SIZE, tfm_train, True)
            if d.train_x
            else None
        )
        test_args = (cfg.DATALOADER.TEST.SAMPLER, cfg.DATALOADER.TEST.BATCH_SIZE, tfm_test, False)
        self.val_loader = build_loader(cfg, d.val, *test_args) if d.val else None
        self.test_loader = build_loader(cfg, d.test, *test_args)
        self.num_classes = d.num_classes
        self.lab2cname = d.lab2cname
        self.show_summary(cfg)

    def show_summary(self, cfg) -> None:
        d = self.dataset
        rows = [["Dataset", cfg.DATASET.NAME], ["# classes", f"{d.num_classes:,}"]]
        rows.append(["# train_x", f"{len(d.train_x):,}"])
        if d.val:
            rows.append(["# val", f"{len(d.val):,}"])
        rows.append(["# test", f"{len(d.test):,}"])
        print(tabulate(rows))
