"""DeAR's role-based attention masks for the vision layers that carry attribute tokens.

Token layout from the insertion layer on: [CLS, patches (n_orig tokens in all), attribute
tokens a_1..a_A]. Per head (paper abstract and Figure 1: a Generalization head's mask blocks
the original tokens from interacting with the attribute tokens; the rest is inferred):
  generalization (and low-entropy heads of a non-core concept): original tokens and
      attribute tokens cannot attend to each other, in either direction;
  attribute a: only attribute token a interacts with the original tokens;
  mixed: everything open.
Attribute <-> attribute pairs (TRAINER.DEAR.ATTR_ATTENTION, inferred: the paper only describes
original <-> attribute pairs): `open` lets attribute tokens attend to each other in every head,
`self` blocks them except each token's attention to itself. The diagonal is always open, so no
softmax row is empty. Masks are additive (0 open, -inf blocked) in the broadcast form
[H, L, L], built once.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from headroles.rolemap import ATTRIBUTE, GENERALIZATION, MIXED, HeadRole, RoleMap

MASK_MODES = ("role", "generalization", "none")  # full masks / only Generalization heads / no masks
ATTR_ATTENTIONS = ("open", "self")  # attribute tokens see each other / only themselves


def head_blocked(role: HeadRole, attributes: Sequence[str], n_orig: int, mode: str,
                 attr_attention: str = "open") -> Tensor:
    """[L, L] bool, True where query row may not attend to key column, for one head."""
    if attr_attention not in ATTR_ATTENTIONS:
        raise ValueError(f"TRAINER.DEAR.ATTR_ATTENTION must be one of {ATTR_ATTENTIONS}, got {attr_attention!r}")
    n_attr = len(attributes)
    length = n_orig + n_attr
    blocked = torch.zeros(length, length, dtype=torch.bool)
    if mode == "none":
        return blocked
    if attr_attention == "self":
        blocked[n_orig:, n_orig:] = ~torch.eye(n_attr, dtype=torch.bool)
    core = role.role == ATTRIBUTE and role.attribute in attributes
    if role.role == MIXED or (core and mode == "generalization"):
        return blocked
    isolated = torch.ones(n_attr, dtype=torch.bool)  # attribute tokens cut off from the originals
    if core:
        isolated[list(attributes).index(role.attribute)] = False
    elif role.role not in (GENERALIZATION, ATTRIBUTE):
        raise ValueError(f"Unknown head role {role.role!r}")
    cols = torch.arange(n_orig, length)[isolated]
    blocked[:n_orig, cols] = True
    blocked[cols, :n_orig] = True
    return blocked


def layer_mask(roles: Sequence[HeadRole], attributes: Sequence[str], n_orig: int, mode: str,
               dtype: torch.dtype = torch.float32, attr_attention: str = "open") -> Tensor:
    """Additive [H, L, L] mask of one layer from its heads' roles."""
    blocked = torch.stack([head_blocked(r, attributes, n_orig, mode, attr_attention) for r in roles])
    assert not blocked.diagonal(dim1=1, dim2=2).any(), "a mask may never block a token from itself"
    return torch.zeros(blocked.shape, dtype=dtype).masked_fill(blocked, float("-inf"))


def role_masks(role_map: RoleMap, layers: Sequence[int], num_heads: int, attributes: Sequence[str],
               n_orig: int, mode: str, dtype: torch.dtype = torch.float32, attr_attention: str = "open") -> Tensor:
    """[len(layers), H, L, L] masks for the given 1-based layers; errors name missing heads."""
    if mode not in MASK_MODES:
        raise ValueError(f"TRAINER.DEAR.MASK must be one of {MASK_MODES}, got {mode!r}")
    return torch.stack([
        layer_mask(role_map.layer_roles(layer, num_heads), attributes, n_orig, mode, dtype, attr_attention)
        for layer in layers
    ])
