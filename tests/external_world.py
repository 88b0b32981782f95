"""What the tests of trainer files share: putting the process back as it was after loading files
(a file's class may take a built-in trainer's name in the process that loads it), a tiny
attribute-world dataset, and an OpenAI-format CLIP that forked clip packages can build."""
from __future__ import annotations

import contextlib
import copy
import sys
from pathlib import Path
from typing import Iterator

import torch
from open_clip.model import CLIP

from attrworld import derived
from datasets.attribute_world import AttributeWorldDataset
from engine.config import CONFIG_EXTENSIONS
from engine.data.base import DATASET_REGISTRY
from engine.registry import EVALUATOR_REGISTRY, TRAINER_REGISTRY
from external import config_keys, cpu_fallback, forks, loader, openai_clip

DATASET = "attr_tiny_texture_shape"


class AttrTinyTextureShape(AttributeWorldDataset):
    """AttrTextureShape's 32 classes with 2 train, 1 val and 2 test images each: seconds per run."""

    spec = derived.DerivedSpec("AttrTinyTextureShape", DATASET, ("texture", "shape"), "latin", seed=7,
                               per_class=(2, 1, 2))


@contextlib.contextmanager
def restored_process() -> Iterator[None]:
    """Afterwards every piece of process state that loading trainer files touches is put back:
    sys.path, the config extensions, the registries (AttrTinyTextureShape is registered inside),
    the imported dassl/clip/external modules and the loader's records. Nested uses restore the
    outer one's state."""
    registries = (TRAINER_REGISTRY, DATASET_REGISTRY, EVALUATOR_REGISTRY)
    records = (loader.LOADED, loader.NAMED, loader.SHADOWED, config_keys.SOURCES, forks.IMPORTED, forks._state)
    saved = (list(sys.path), list(CONFIG_EXTENSIONS), [dict(r._entries) for r in registries], set(sys.modules),
             [copy.copy(r) for r in records], cpu_fallback.installed())
    DATASET_REGISTRY.register()(AttrTinyTextureShape)
    try:
        yield
    finally:
        if not saved[5]:
            cpu_fallback.uninstall()
        sys.path[:] = saved[0]
        CONFIG_EXTENSIONS[:] = saved[1]
        for registry, entries in zip(registries, saved[2]):
            registry._entries.clear()
            registry._entries.update(entries)
        for name in set(sys.modules) - saved[3]:
            if name.split(".")[0] in ("dassl", "clip", loader.PACKAGE):
                del sys.modules[name]
        for record, before in zip(records, saved[4]):
            record.clear()
            record.update(before) if isinstance(record, (dict, set)) else record.extend(before)
        openai_clip._state["context_length"] = openai_clip.OPENAI_CONTEXT_LENGTH


def openai_format_clip(path: Path, image_size: int = 64) -> Path:
    """A random CLIP in OpenAI's layout that OpenAI's build_model infers right (heads = width / 64,
    QuickGELU, context 77), saved as a state dict, so a forked clip and promptlab load the same model."""
    torch.manual_seed(0)
    model = CLIP(embed_dim=64, quick_gelu=True,
                 vision_cfg={"image_size": image_size, "layers": 2, "width": 128, "patch_size": 16},
                 text_cfg={"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 2})
    torch.save(model.state_dict(), path)
    return path
