"""The role map: which role each attention head of the deep vision layers plays.

Written by tools/head_roles.py, read by the DeAR trainer. JSON layout:

    {"backbone": "ViT-B/16", "layers": [9, 10, 11, 12], "heads_per_layer": 12,
     "heads": [{"layer": 9, "head": 0, "role": "attribute", "attribute": "color",
                "entropy": 0.8, ...}, ...]}

`layer` is 1-based (the paper's "layers 9-12" of ViT-B/16), `head` is 0-based. `role` is
"attribute" (with `attribute`, a core attribute), "generalization" or "mixed". The tool adds
entropy, concept distribution and top texts per head, and `weights`, the fingerprint of the
backbone weights the map was computed on (backbone.weights_fingerprint; a cached analysis has it
in its `cache_key`): a run on other weights refuses the map. The trainer needs only the roles.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.errors import DataError, MissingFileError
from engine.io import read_json

ATTRIBUTE, GENERALIZATION, MIXED = "attribute", "generalization", "mixed"
ROLES = (ATTRIBUTE, GENERALIZATION, MIXED)
HOW_TO_MAKE = (
    "make one with `python tools/head_roles.py --backbone <MODEL.BACKBONE.NAME> --images "
    "configs/datasets/<dataset>.yaml --root <DATA> --out {path}`, or set TRAINER.DEAR.ROLE_MAP global "
    "(this backbone's map, computed once and cached) or auto (from the run's training images)"
)


class RoleMapError(DataError):
    """A role map that is malformed or does not fit the model; the message names the file and the fix."""


class MissingRoleMapError(RoleMapError, MissingFileError):
    """No role map where the config says."""


@dataclass(frozen=True)
class HeadRole:
    layer: int  # 1-based
    head: int  # 0-based
    role: str
    attribute: str | None = None


@dataclass(frozen=True)
class RoleMap:
    source: str
    backbone: str
    heads: tuple[HeadRole, ...]
    weights: str | None = None  # fingerprint of the weights it was computed on (None: not recorded)

    @property
    def layers(self) -> list[int]:
        return sorted({h.layer for h in self.heads})

    def layer_roles(self, layer: int, num_heads: int) -> list[HeadRole]:
        """The roles of heads 0..num_heads-1 of a 1-based layer, or a RoleMapError naming what is missing."""
        found = {h.head: h for h in self.heads if h.layer == layer}
        missing = [h for h in range(num_heads) if h not in found]
        if missing:
            raise RoleMapError(
                f"Role map {self.source} has no role for layer {layer} head(s) {missing} (it covers layers "
                f"{self.layers}); rerun tools/head_roles.py with --layers covering {layer}, or change TRAINER.DEAR.J"
            )
        extra = sorted(set(found) - set(range(num_heads)))
        if extra:
            raise RoleMapError(f"Role map {self.source}: layer {layer} names heads {extra}, but the backbone has {num_heads}")
        return [found[h] for h in range(num_heads)]

    def counts(self) -> dict[str, int]:
        out = {r: 0 for r in ROLES}
        for h in self.heads:
            out[h.role] += 1
        return out


def _head(entry: dict, index: int, source: str) -> HeadRole:
    where = f"Role map {source}, heads[{index}]"
    for key in ("layer", "head", "role"):
        if key not in entry:
            raise RoleMapError(f"{where} lacks {key!r}; every head needs layer (1-based), head (0-based) and role")
    role = entry["role"]
    if role not in ROLES:
        raise RoleMapError(f"{where}: role {role!r} is not one of {ROLES}")
    attribute = entry.get("attribute")
    if role == ATTRIBUTE and not attribute:
        raise RoleMapError(f"{where}: an attribute head needs 'attribute' (e.g. \"color\")")
    return HeadRole(int(entry["layer"]), int(entry["head"]), role, attribute if role == ATTRIBUTE else None)


def parse_role_map(payload: dict, source: str) -> RoleMap:
    if not isinstance(payload, dict) or not isinstance(payload.get("heads"), list):
        raise RoleMapError(f"Role map {source} must be a JSON object with a 'heads' list; {HOW_TO_MAKE.format(path=source)}")
    heads = tuple(_head(e, i, source) for i, e in enumerate(payload["heads"]))
    seen = set()
    for h in heads:
        if (h.layer, h.head) in seen:
            raise RoleMapError(f"Role map {source} lists layer {h.layer} head {h.head} twice")
        seen.add((h.layer, h.head))
    key = payload.get("cache_key")
    weights = payload.get("weights") or (key.get("weights") if isinstance(key, dict) else None)
    return RoleMap(source, str(payload.get("backbone", "")), heads, weights)


def check_weights(role_map: RoleMap, fingerprint: str, backbone: str) -> str | None:
    """Refuse a map computed on weights other than the run's (`fingerprint`, from
    backbone.weights_fingerprint); a note to print when the map records none (a hand-written map)."""
    if role_map.weights is None:
        return (f"Note: role map {role_map.source} records no backbone weights fingerprint (a hand-written map?), so "
                f"it cannot be checked against this run's weights ({backbone}, {fingerprint})")
    if role_map.weights != fingerprint:
        raise RoleMapError(
            f"Role map {role_map.source} was computed on other backbone weights ({role_map.backbone or 'unnamed'}, "
            f"{role_map.weights}) than this run's (MODEL.BACKBONE.NAME {backbone}, {fingerprint}): its heads' roles "
            f"are another model's. Use the map made for these weights, or {HOW_TO_MAKE.format(path='roles.json')}"
        )
    return None


def read_role_map(path: str | Path) -> RoleMap:
    path = Path(path)
    if not path.is_file():
        raise MissingRoleMapError(f"No role map at {path}: {HOW_TO_MAKE.format(path=path)}")
    payload = read_json(path, f"Fix that line (a hand-edited map), or delete the file and {HOW_TO_MAKE.format(path=path)}")
    return parse_role_map(payload, str(path))
