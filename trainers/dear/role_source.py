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
  a path: a role map JSON (tools/head_roles.py --out, or hand-made);
  an https:// or file:// URL with TRAINER.DEAR.ROLE_MAP_SHA256: a published map, fetched once into
      the user cache and checked (headroles/published.py).
Everything a run's role map needs is checked before the data and the model load (`check_source`):
the pin, the file, the weights it was computed on, and for `global` its images, whose absence
gets the command lines that work without them.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Sequence

import torch
import yaml

from backbone import ClipBackbone, load_clip, weights_fingerprint
from engine.data.base import Datum
from engine.errors import ConfigError, MissingFileError, UserError
from headroles import textspan_pool
from headroles.analysis import AnalysisSettings
from headroles.images import evenly, image_paths
from headroles.pool import DEFAULT_POOL, REPO
from headroles.published import check_file_pin, check_pin, fetch_role_map, is_url
from headroles.rolemap import HOW_TO_MAKE, MissingRoleMapError, check_weights, read_role_map
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


def script_line(cfg) -> str:
    """The DeAR script command of this run (for messages): dataset config name and seed."""
    stem = next((p.stem for p in sorted((REPO / "configs" / "datasets").glob("*.yaml"))
                 if (yaml.safe_load(p.read_text()) or {}).get("DATASET", {}).get("NAME") == cfg.DATASET.NAME),
                cfg.DATASET.NAME.lower())
    if cfg.TASK == "CD":
        return f"bash scripts/dear/xd_train.sh {cfg.SEED}"
    script = "few_shot.sh" if cfg.TASK == "FS" else "base2new_train.sh"
    return f"bash scripts/dear/{script} {stem} {cfg.SEED}"


def global_images(cfg) -> list[str]:
    """ANALYSIS_IMAGES: a dataset config (its ANALYSIS_SPLIT under the run's data root) or an image
    folder. Unreadable: an error with the command lines that work without those images."""
    c = cfg.TRAINER.DEAR
    spec = c.ANALYSIS_IMAGES
    if not Path(spec).exists() and (REPO / spec).exists():
        spec = str(REPO / spec)
    try:
        return image_paths(spec, cfg.DATASET.ROOT, c.ANALYSIS_SPLIT)
    except (UserError, FileNotFoundError) as e:
        run = script_line(cfg)
        reason = str(e).split(". ")[0] if spec.endswith((".yaml", ".yml")) else str(e)  # not its own fixes (--root)
        what = (" (ImageNet's validation images)" if Path(spec).name == "imagenet.yaml" and c.ANALYSIS_SPLIT == "test"
                else "")
        raise MissingFileError(
            f"TRAINER.DEAR.ROLE_MAP global analyses the backbone's heads on TRAINER.DEAR.ANALYSIS_IMAGES "
            f"{c.ANALYSIS_IMAGES}, split {c.ANALYSIS_SPLIT}{what}, which cannot be read ({reason}).\n"
            "DeAR does not need ImageNet: any of these gives it its role map (the options also work at the end of "
            "a train.py command):\n"
            f"- a folder of general photos, analysed once and cached for every later run: {run} "
            "TRAINER.DEAR.ANALYSIS_IMAGES /path/to/photos\n"
            f"- a role map file (tools/head_roles.py --out roles.json, docs/DEAR.md): {run} "
            "TRAINER.DEAR.ROLE_MAP /path/to/roles.json\n"
            f"- a role map published for these weights: {run} TRAINER.DEAR.ROLE_MAP https://<host>/<map>.json "
            "TRAINER.DEAR.ROLE_MAP_SHA256 <its sha256>\n"
            "- or ImageNet itself in your DATA folder (docs/DATASETS.md)"
        ) from e


def check_source(cfg, fingerprint: str, quiet: bool = False) -> list[str] | None:
    """Check, before the data and the model load, that the run's role map can be had: a URL's pin
    (fetching it once), a file's existence, pin and weights fingerprint, or `global`'s images (returned,
    so that they are listed once)."""
    c = cfg.TRAINER.DEAR
    if c.ROLE_MAP in COMPUTED and c.ROLE_MAP_SHA256:
        raise ConfigError(f"TRAINER.DEAR.ROLE_MAP_SHA256 pins a role map file or URL; ROLE_MAP {c.ROLE_MAP} is computed")
    if c.ROLE_MAP == "global":
        return global_images(cfg)
    if c.ROLE_MAP == "auto":
        return None
    path = map_file(cfg)
    note = check_weights(read_role_map(path), fingerprint, cfg.MODEL.BACKBONE.NAME)
    if note and not quiet:
        print(note)
    return None


def map_file(cfg) -> Path:
    """ROLE_MAP as a file: the path, or a pinned URL's copy in the user cache; its pin checked."""
    c = cfg.TRAINER.DEAR
    check_pin(c.ROLE_MAP, c.ROLE_MAP_SHA256)
    if is_url(c.ROLE_MAP):
        return fetch_role_map(c.ROLE_MAP, c.ROLE_MAP_SHA256)
    path = Path(c.ROLE_MAP)
    if not path.is_file():
        raise MissingRoleMapError(f"No role map at {path}: {HOW_TO_MAKE.format(path=path)}")
    check_file_pin(path, c.ROLE_MAP_SHA256)
    return path


def role_map_file(cfg, clip: ClipBackbone, train_items: Sequence[Datum], images: list[str] | None = None) -> Path:
    """The role map JSON this run uses: the file (or the URL's checked copy), or the cached global /
    auto analysis; `images`: global's image list, if `check_source` listed it already."""
    c = cfg.TRAINER.DEAR
    if c.ROLE_MAP not in COMPUTED:
        return map_file(cfg)
    name, pretrained = cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PRETRAINED
    fingerprint = weights_fingerprint(name, pretrained)
    scope: dict = {"kind": c.ROLE_MAP}
    if c.ROLE_MAP == "auto":
        images = [d.impath for d in train_items]
        scope.update(dataset=cfg.DATASET.NAME, seed=cfg.SEED, shots=cfg.DATASET.NUM_SHOTS,
                     subsample=cfg.DATASET.SUBSAMPLE_CLASSES)
    else:
        images = images if images is not None else global_images(cfg)
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
