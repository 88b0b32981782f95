"""Images for the head analysis: a dataset config's split or a folder, CLIP-preprocessed."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
import torchvision.transforms as T
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from engine.data.images import read_image
from engine.errors import ConfigError, MissingFileError, UsageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def clip_transform(image_size: int) -> Callable:
    """CLIP's test preprocessing: bicubic resize of the short side, centre crop, OpenAI stats."""
    return T.Compose([
        T.Resize(image_size, interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(image_size),
        T.ToTensor(),
        T.Normalize(OPENAI_DATASET_MEAN, OPENAI_DATASET_STD),
    ])


def evenly(items: Sequence, limit: int) -> list:
    """At most `limit` items spread evenly over the list (deterministic, covers every class
    of a class-sorted split)."""
    if limit <= 0 or len(items) <= limit:
        return list(items)
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def dataset_image_paths(config: str, root: str, split: str = "train", subsample: str = "all") -> list[str]:
    """Image paths of a split of the dataset a configs/datasets/*.yaml names."""
    import datasets  # noqa: F401  (registers the datasets)
    from engine.config import get_cfg, merge_file
    from engine.data.base import DATASET_REGISTRY

    cfg = get_cfg()
    merge_file(cfg, config)
    cfg.DATASET.ROOT = root
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    dataset = DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)
    items = {"train": dataset.train_x, "val": dataset.val, "test": dataset.test}[split]
    if not items:
        raise ConfigError(f"{cfg.DATASET.NAME} has no {split} split; choose another --split (TRAINER.DEAR.ANALYSIS_SPLIT)")
    return [d.impath for d in items]


def folder_image_paths(folder: str | Path) -> list[str]:
    paths = sorted(str(p) for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise MissingFileError(f"No images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {folder}")
    return paths


def image_paths(spec: str, root: str = "", split: str = "train", subsample: str = "all") -> list[str]:
    """--images: a dataset config (.yaml, with --root) or a folder of images."""
    if spec.endswith((".yaml", ".yml")):
        if not root:
            raise UsageError(f"--images {spec} is a dataset config: pass --root <DATA> too")
        return dataset_image_paths(spec, root, split, subsample)
    if Path(spec).is_dir():
        return folder_image_paths(spec)
    raise MissingFileError(f"--images {spec} is neither a dataset config (.yaml) nor a folder of images")


def image_batches(paths: Sequence[str], transform: Callable, batch_size: int) -> Iterator[torch.Tensor]:
    for start in range(0, len(paths), batch_size):
        yield torch.stack([transform(read_image(p)) for p in paths[start:start + batch_size]])

