"""The attribute-world datasets (attrworld/derived.py), generated under DATASET.ROOT on first use.

Each is an ordinary CoOp `SplitDataset` once generated: class folders, a split JSON, few-shot
caches and base/new subsampling all work as for the real datasets. `attributes` gives the
ground-truth attributes of every image, keyed by its path.
"""
from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from attrworld import derived
from engine.data.base import DATASET_REGISTRY, SplitDataset


class AttributeWorldDataset(SplitDataset):
    spec: derived.DerivedSpec
    image_dir = derived.IMAGE_DIR

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.dataset_dir = cls.spec.dataset_dir
        cls.split_file = cls.spec.split_file

    def __init__(self, cfg):
        derived.generate(self.spec, Path(os.path.expanduser(cfg.DATASET.ROOT)).resolve())
        super().__init__(cfg)

    @cached_property
    def attributes(self) -> dict[str, dict]:
        """impath -> {shape, color, texture, size, position, rotation, center, radius, background, rgb}."""
        records = derived.load_attributes(self.spec, self.root.parent)
        return {str(self.images / rel): rec for rel, rec in records.items()}


@DATASET_REGISTRY.register()
class AttrColorShape(AttributeWorldDataset):
    """64 classes "<color> <shape>"; base and new share every colour and shape (new = unseen pairs)."""

    spec = derived.COLOR_SHAPE


@DATASET_REGISTRY.register()
class AttrTextureShape(AttributeWorldDataset):
    """32 classes "<texture> <shape>" with colour as nuisance; new = unseen pairs."""

    spec = derived.TEXTURE_SHAPE


@DATASET_REGISTRY.register()
class AttrSizeTextureShape(AttributeWorldDataset):
    """64 fine-grained classes "<size> <texture> <shape>": neighbours differ in one of three attributes."""

    spec = derived.SIZE_TEXTURE_SHAPE


@DATASET_REGISTRY.register()
class AttrColorHoldout(AttributeWorldDataset):
    """The 64 colour+shape classes ordered colour-first: new classes have colours no base class has."""

    spec = derived.COLOR_HOLDOUT


@DATASET_REGISTRY.register()
class AttrHueShift(AttributeWorldDataset):
    """AttrColorHoldout's classes seen through a 25-degree hue cast: zero-shot CLIP misreads the
    colours, and 16 shots of the base colours show the cast for those colours only."""

    spec = derived.HUE_SHIFT
