"""Where a DeAR run's role map comes from (TRAINER.DEAR.ROLE_MAP).

  global (default): the backbone's own map, as the paper uses one offline analysis of the frozen
      backbone for every dataset (paper abstract: heads are classified by Concept Entropy;
      Figure 1 names L9H0 a Generalization head without reference to a dataset). Analysed on
      ANALYSIS_IMAGES (default: ImageNet's validation images, CoOp's ImageNet test split, which is
      what TextSpan's reference code analyses) with the ANALYSIS_* settings; computed on first
      use and cached by headroles.store, so every dataset and seed of a backbone reads the
      same file. `python tools/head_roles.py` with the same inputs fills the same cache entry.
  auto: an ablation, the analysis on the run's own training images; its cache entry is bound
      to the dataset, seed, shots and class subset, so no two such runs share one.
  any other value: the path of a role map JSON (tools/head_roles.py --out, or hand-made).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Sequence

import torch

from backbone import ClipBackbone, load_clip, weights_fingerprint
from engine.data.base import Datum
from engine.errors import MissingFileError, UserError
from headroles import textspan_pool
from headroles.analysis import AnalysisSettings
from headroles.images import evenly, image_paths
from headroles.pool import DEFAULT_POOL, REPO
from headroles.store import AnalysisInput, cached_analysis

COMPUTED = ("global", "auto")


def analysis_settings(cfg, clip: ClipBackbone) -> AnalysisSettings:
    """The analysis of the layers DeAR masks (J..last), with the ANALYSIS_* keys."""
    c = cfg.TRAINER.DEAR
    return AnalysisSettings(
        layers=tuple(range(c.J, clip.vision_layers + 1)), attributes=tuple(c.ATTRIBUTES),
        n_texts=c.ANALYSIS_N_TEXTS, weighting=c.ANALYSIS_WEIGHTING, cluster=c.ANALYSIS_CLUSTER,
        thresholds=c.ANALYSIS_THRESHOLDS, min_cluster_size=c.ANALYSIS_MIN_CLUSTER_SIZE,
    )


def global_images(cfg) -> list[str]:
    """ANALYSIS_IMAGES: a dataset config (its ANALYSIS_SPLIT under DATASET.ROOT) or an image folder."""
    c = cfg.TRAINER.DEAR
    spec = c.ANALYSIS_IMAGES
    if not Path(spec).exists() and (REPO / spec).exists():
        spec = str(REPO / spec)
    try:
        return image_paths(spec, cfg.DATASET.ROOT, c.ANALYSIS_SPLIT)
    except (UserError, FileNotFoundError) as e:
        raise MissingFileError(
            f"TRAINER.DEAR.ROLE_MAP global analyses the heads on TRAINER.DEAR.ANALYSIS_IMAGES={c.ANALYSIS_IMAGES} "
            f"(split {c.ANALYSIS_SPLIT}, under DATASET.ROOT={cfg.DATASET.ROOT}), which cannot be read: {e}\n"
            "Fix: get ImageNet (docs/DATASETS.md), or set TRAINER.DEAR.ANALYSIS_IMAGES to another dataset config "
            "or a folder of images, or TRAINER.DEAR.ROLE_MAP to a role map file (docs/DEAR.md)"
        ) from e


def role_map_file(cfg, clip: ClipBackbone, train_items: Sequence[Datum]) -> Path:
    """The role map JSON this run uses: the path itself, or the cached global / auto analysis."""
    c = cfg.TRAINER.DEAR
    if c.ROLE_MAP not in COMPUTED:
        return Path(c.ROLE_MAP)
    name, pretrained = cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PRETRAINED
    fingerprint = weights_fingerprint(name, pretrained)
    scope: dict = {"kind": c.ROLE_MAP}
    if c.ROLE_MAP == "auto":
        images = [d.impath for d in train_items]
        scope.update(dataset=cfg.DATASET.NAME, seed=cfg.SEED, shots=cfg.DATASET.NUM_SHOTS,
                     subsample=cfg.DATASET.SUBSAMPLE_CLASSES)
    else:
        images = global_images(cfg)
    if not pretrained:
        scope["seed"] = cfg.SEED  # a random init is the seed's
    pool = textspan_pool.resolve(c.ANALYSIS_TEXTS) if c.ANALYSIS_TEXTS else DEFAULT_POOL
    inp = AnalysisInput(name, fingerprint, tuple(evenly(images, c.ANALYSIS_MAX_IMAGES)), pool,
                        analysis_settings(cfg, clip), scope)
    return cached_analysis(fp32(clip, pretrained), inp)


def fp32(clip: ClipBackbone, pretrained: bool) -> ClipBackbone:
    """The backbone in fp32 whatever the run's PREC, so the analysis equals the tool's: pretrained
    weights are read again from their file, a random init is copied and cast."""
    if clip.dtype == torch.float32:
        return clip
    if pretrained:
        return load_clip(clip.name, pretrained=True, precision="fp32", device=clip.device)
    return ClipBackbone(copy.deepcopy(clip.model).float(), clip.tokenizer, clip.name)
