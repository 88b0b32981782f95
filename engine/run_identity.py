"""Run identity: what a run is, recorded with everything it writes and checked before reuse.

A run's manifest names its trainer, dataset, seed, shots, class subset, backbone and the
fingerprint of the backbone's weights, whether it trains or evaluates (and which checkpoint
files it evaluates, by digest), and its resolved config without the keys that cannot change
a result (`IGNORED_KEYS`). It goes into `results.json` and into every checkpoint. Resuming
from a checkpoint, skipping a finished run and evaluating a model compare manifests, and a
difference is refused with the fields that differ. The code version is recorded, not
compared: updating the toolbox does not invalidate finished runs.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
from functools import lru_cache
from pathlib import Path

import yaml

from engine.cache import sha256_file
from engine.errors import DataError
from engine.registry import TRAINER_REGISTRY

# Keys that say where files are or how often to print, never what is computed.
IGNORED_KEYS = (
    "OUTPUT_DIR", "RESUME", "DATASET.ROOT", "DATALOADER.NUM_WORKERS", "TRAIN.PRINT_FREQ",
    "TRAIN.CHECKPOINT_FREQ", "VERBOSE", "USE_CUDA", "TEST.FEATURE_CACHE",
)
# Manifest entries recorded for the reader but not compared.
UNCOMPARED = ("code", "config_sha256")
# The code of a trainer from a file (external/loader.py: code_identity); absent for promptlab's own.
CODE = "trainer_code"
# What an evaluation must share with the run that trained the model it loads.
MODEL_FIELDS = ("trainer", CODE, "backbone", "weights")
# Every field a manifest has had since manifests exist, with its types. A recorded manifest that
# lacks one or holds another type is damaged (or predates manifests): it matches no run.
REQUIRED_FIELDS: dict[str, tuple[type, ...]] = {
    "trainer": (str,), "dataset": (str,), "seed": (int, type(None)), "num_shots": (int,), "subsample": (str,),
    "backbone": (str,), "weights": (str,), "mode": (str,), "model": (dict, type(None)), "config": (dict,),
    "config_sha256": (str,), "code": (str,),
}
OPTIONAL_FIELDS: dict[str, tuple[type, ...]] = {CODE: (dict,)}  # fields added later, checked where present
DAMAGED = "manifest"  # the field name under which differences() reports a damaged manifest
REPO = Path(__file__).resolve().parents[1]


@lru_cache(maxsize=1)
def code_version() -> str:
    """`git describe` of this checkout (with -dirty), else the package version."""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty", "--abbrev=12"],
                             capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return f"git:{out.stdout.strip()}"
    except (OSError, subprocess.TimeoutExpired):
        pass
    try:
        import tomllib

        return f"promptlab {tomllib.loads((REPO / 'pyproject.toml').read_text())['project']['version']}"
    except (OSError, KeyError, ValueError, ImportError):
        return "unknown"


def _drop(config: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    node = config
    for key in parents:
        node = node.get(key)
        if not isinstance(node, dict):
            return
    node.pop(leaf, None)


def result_config(config: dict) -> dict:
    """A resolved config (plain dict) without IGNORED_KEYS."""
    config = json.loads(json.dumps(config))
    for key in IGNORED_KEYS:
        _drop(config, key)
    return config


def plain_config(cfg) -> dict:
    """A yacs config as plain Python data (lists, not tuples), as results.json records it."""
    return yaml.safe_load(cfg.dump())


def run_manifest(cfg, mode: str = "train", model: dict | None = None, strict: bool = True) -> dict:
    """The manifest of the run `cfg` describes; `mode` is "train" or "eval" (which loads `model`,
    as described by `describe_model`). With strict False (predicting a run's state, e.g. for a
    sweep's skip rule), weights that cannot be found are fingerprinted as "unavailable"."""
    from backbone import weights_fingerprint
    from engine.errors import UserError

    try:
        weights = weights_fingerprint(cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PRETRAINED)
    except (UserError, FileNotFoundError, ValueError) as e:
        if strict:
            raise
        weights = f"unavailable: {e}"
    config = result_config(plain_config(cfg))
    manifest = {
        "trainer": cfg.TRAINER.NAME,
        "dataset": cfg.DATASET.NAME,
        "seed": cfg.SEED if cfg.SEED >= 0 else None,  # None: unseeded (Dassl's SEED < 0), every run differs
        "num_shots": cfg.DATASET.NUM_SHOTS,
        "subsample": cfg.DATASET.SUBSAMPLE_CLASSES,
        "backbone": cfg.MODEL.BACKBONE.NAME,
        "weights": weights,
        "mode": mode,
        "model": model,
        "config": config,
        "config_sha256": config_digest(config),
        "code": code_version(),
    }
    code = trainer_code(cfg.TRAINER.NAME)
    if code is not None:
        manifest[CODE] = code
    return manifest


def trainer_code(name: str) -> dict | None:
    """The identity of the code of trainer `name` when it comes from a file (its classmethod
    code_identity), so that a changed file is another run; None for promptlab's own trainers,
    whose code is the toolbox's (recorded as `code`, not compared)."""
    identity = getattr(TRAINER_REGISTRY.get(name), "code_identity", None) if name in TRAINER_REGISTRY else None
    return identity() if identity is not None else None


def config_digest(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def manifest_problems(recorded) -> list[str]:
    """Why a recorded manifest cannot be trusted (empty if it is whole): not an object, a field
    missing or of another type, or a config that no longer hashes to its recorded digest."""
    if not isinstance(recorded, dict):
        return [f"it is a {type(recorded).__name__}, not an object (damaged, or written before run manifests)"]
    missing = [f for f in REQUIRED_FIELDS if f not in recorded]
    if missing:
        return [f"it lacks {', '.join(missing)} (damaged, or written before run manifests)"]
    checked = {**REQUIRED_FIELDS, **{f: t for f, t in OPTIONAL_FIELDS.items() if f in recorded}}
    problems = [f"{field} is a {type(recorded[field]).__name__}, expected {' or '.join(t.__name__ for t in types)}"
                for field, types in checked.items() if not isinstance(recorded[field], types)
                or (isinstance(recorded[field], bool) and bool not in types)]
    if not problems and config_digest(recorded["config"]) != recorded["config_sha256"]:
        problems.append("its config does not match its config_sha256 (edited or damaged)")
    return problems


# ---- which checkpoint an evaluation loads ----------------------------------------------------
def describe_model(directory: str | Path | None, epoch: int | None) -> dict | None:
    """The checkpoint files an evaluation of `directory` loads, by digest (None: no model)."""
    from engine.checkpoint import model_folders, resolve_model_file

    if not directory:
        return None
    files = {}
    for folder in model_folders(directory):
        path = resolve_model_file(folder, epoch)
        files[folder.name] = {"file": path.name, "sha256": sha256_file(path) if path.is_file() else None}
    return {"epoch": epoch, "files": files}


# ---- comparing ------------------------------------------------------------------------------------
def _flatten(value, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict) and value:
        out: dict[str, object] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def _describe_code(code: dict | None, trainer: str) -> str:
    return f"promptlab's built-in {trainer}" if code is None else f"class {code['class']} of {code['file']}"


def differences(recorded, current: dict, fields: tuple[str, ...] | None = None) -> list[str]:
    """'field: recorded vs this run' for every compared field that differs, config keys one by
    one; config keys that only one side has (a key a newer version added, with its default) are
    not compared. A damaged or incomplete recorded manifest differs from every run: its problems
    are returned as 'manifest: ...' entries. An absent `trainer_code` means promptlab's own
    trainer, so it is compared either way."""
    problems = manifest_problems(recorded)
    if problems:
        return [f"{DAMAGED}: {p}" for p in problems]
    out = []
    fields = fields or tuple(k for k in current if k not in UNCOMPARED)
    if CODE not in fields and CODE in recorded and "trainer" in fields:
        fields = (*fields, CODE)
    for field in fields:
        if field == CODE and (CODE in recorded) != (CODE in current):
            trainer = current.get("trainer", "")
            out.append(f"{CODE}: {_describe_code(recorded.get(CODE), trainer)} (recorded) vs "
                       f"{_describe_code(current.get(CODE), trainer)} (this run)")
            continue
        old, new = recorded.get(field), current.get(field)
        if field in ("config", "model", CODE):
            flat_old, flat_new = _flatten(old, field), _flatten(new, field)
            keys = set(flat_old) & set(flat_new) if field == "config" else set(flat_old) | set(flat_new)
            for key in sorted(keys):
                if flat_old.get(key, "<absent>") != flat_new.get(key, "<absent>"):
                    out.append(f"{key}: {flat_old.get(key, '<absent>')!r} (recorded) vs "
                               f"{flat_new.get(key, '<absent>')!r} (this run)")
        elif old != new:
            out.append(f"{field}: {old!r} (recorded) vs {new!r} (this run)")
    return out


def mismatch_message(what: str, diffs: list[str], output_dir: str | Path | None, restart_flag: str) -> str:
    shown = diffs[:12] + ([f"... and {len(diffs) - 12} more"] if len(diffs) > 12 else [])
    ways = (f"Use another --output-dir for this run, or rerun with {restart_flag} to move the old run aside "
            f"(to a hidden folder next to {output_dir}; nothing is deleted)") if output_dir else \
        "Point to the run you meant, or train a new one"
    damaged = any(d.startswith(f"{DAMAGED}: ") for d in diffs)
    header = "cannot be shown to be this run, as its manifest is damaged or incomplete" if damaged else \
        "belongs to another run"
    return f"{what} {header}:\n" + "\n".join(f"- {d}" for d in shown) + f"\n{ways}."


def read_results(path: Path | str) -> dict:
    """A finished run's results.json, checked before any figure is taken from it: a JSON object
    whose `evaluations` map each split to its `metrics`, and whose `manifest` is whole
    (engine/run_identity.py). Anything else is a DataError naming the file and what is wrong."""
    path = Path(path)
    fix = "rerun that run (train.py ... --start-over moves the damaged folder aside)"
    try:
        results = json.loads(path.read_text())
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is damaged: not a text file ({e.reason} at byte {e.start}); {fix}") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}): it is damaged; "
                        f"{fix}") from None
    if not isinstance(results, dict):
        raise DataError(f"{path} is damaged: it holds a {type(results).__name__}, not a JSON object; {fix}")
    evaluations = results.get("evaluations")
    if not isinstance(evaluations, dict) or not all(
            isinstance(e, dict) and isinstance(e.get("metrics"), dict) for e in evaluations.values()):
        raise DataError(f"{path} is damaged: 'evaluations' is not a map of splits to their metrics; {fix}")
    problems = manifest_problems(results.get("manifest", {}))
    if problems:
        raise DataError(f"{path} cannot be shown to be the run it reports: its manifest {'; '.join(problems)}; "
                        f"{fix}")
    return results
