"""The learnable representation space of MMRL (Guo & Gu, CVPR 2025) and MMRL++ (IJCV 2026),
shared by the `MMRL` and `MMRLpp` trainers and by DeAR's tokens.

Official code (yunncheng/MMRL, `trainers/mmrl*.py`, `clip/model_mmrl*.py`):
  - a latent [n, rep_dim] ("space tokens", N(0, 0.02)) is mapped, for every layer that carries
    representation tokens, into each tower's width: MMRL by an independent Linear per layer, all
    starting as copies of one initialisation (`_get_clones`); MMRL++ by one shared learnable
    weight plus a per-layer low-rank residual A_l B_l (A_l Kaiming-uniform, B_l = 0) and a
    per-layer bias starting from the shared Linear's bias (Shared-Residual Representation Aligner);
  - the tokens enter a tower before its first representation layer, right after the class/start
    token; before each later representation layer they are replaced by that layer's mapping
    (MMRL) or blended, beta * mapping + (1 - beta) * their previous output (MMRL++);
  - the representation feature is ln_post of those tokens, averaged, times the representation
    projection (MMRL: learnable, N(0, width^-1/2); MMRL++: the frozen projection plus a low-rank
    residual);
  - evaluation scores base classes with the fused logits and new classes with the class-token
    logits (decoupled inference), by the TASK key (`scores_fused`);
  - the logits are 100 * cosine (`logit_scale`: LOGIT_SCALE 100., or 0 for the checkpoint's own).
DeAR uses the latent, the shared-residual aligners and the token hook (its tokens enter after
the patch tokens, one per attribute).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from backbone import ClipBackbone, blend_tokens, insert_tokens, replace_tokens
from engine.errors import ConfigError

TASKS = ("B2N", "FS", "CD")


def residual_factors(rows: int, cols: int, rank: int) -> tuple[Tensor, Tensor]:
    """(A [rows, rank] Kaiming-uniform as nn.Linear's weight, B [rank, cols] zeros): a low-rank
    residual A @ B that starts at zero (the official Residual_Aligner and the MMRL++ projection)."""
    down = torch.empty(rows, rank)
    nn.init.kaiming_uniform_(down, a=math.sqrt(5))
    return down, torch.zeros(rank, cols)


class RepresentationAligner(nn.Module):
    """latent [n, rep_dim] -> [layers, n, width], one linear map per representation layer.

    shared (MMRL++, DeAR): weight [width, rep_dim] shared, plus per layer `down @ up` of rank
    `rank` (0: none) and a bias. Not shared (MMRL): weight [layers, width, rep_dim] and bias,
    every layer starting from the same nn.Linear initialisation.
    """

    def __init__(self, rep_dim: int, width: int, layers: int, rank: int, shared: bool = True):
        super().__init__()
        if not shared and rank:
            raise ValueError("independent per-layer maps (MMRL) take no low-rank residual")
        linear = nn.Linear(rep_dim, width)  # PyTorch's default init, as the official Linear
        weight = linear.weight.detach().clone()
        self.weight = nn.Parameter(weight if shared else weight.repeat(layers, 1, 1))
        self.bias = nn.Parameter(linear.bias.detach().clone().repeat(layers, 1))
        self.rank = rank
        if rank > 0:
            factors = [residual_factors(width, rep_dim, rank) for _ in range(layers)]
            self.down = nn.Parameter(torch.stack([a for a, _ in factors]))
            self.up = nn.Parameter(torch.stack([b for _, b in factors]))

    def forward(self, latent: Tensor) -> Tensor:
        if self.weight.dim() == 3:
            weight = self.weight
        elif self.rank > 0:
            weight = self.weight + self.down @ self.up
        else:
            weight = self.weight.expand(self.bias.shape[0], -1, -1)
        return torch.einsum("nr,lwr->lnw", latent, weight) + self.bias[:, None]


class RepresentationSpace(nn.Module):
    """The shared latent and its per-layer images in the vision and text towers.

    The latent has max(n_vision, n_text) rows; the vision side uses the first n_vision, the
    text side the first n_text (MMRL: both n; DeAR: one per attribute / K).
    """

    def __init__(self, n_vision: int, n_text: int, rep_dim: int, vision_width: int, text_width: int,
                 vision_layers: int, text_layers: int, rank: int, shared: bool = True):
        super().__init__()
        self.n_vision, self.n_text = n_vision, n_text
        self.latent = nn.Parameter(torch.empty(max(n_vision, n_text), rep_dim))
        nn.init.normal_(self.latent, std=0.02)
        self.to_vision = RepresentationAligner(rep_dim, vision_width, vision_layers, rank, shared) if n_vision else None
        self.to_text = RepresentationAligner(rep_dim, text_width, text_layers, rank, shared) if n_text else None

    def vision(self) -> Tensor | None:
        """[vision layers, n_vision, vision_width], or None without vision tokens."""
        return self.to_vision(self.latent[:self.n_vision]) if self.to_vision is not None else None

    def text(self) -> Tensor | None:
        """[text layers, n_text, text_width], or None without text tokens."""
        return self.to_text(self.latent[:self.n_text]) if self.to_text is not None else None


def token_hook(tokens: Tensor, layers: Sequence[int], position: int, beta: float) -> Callable[[int, Tensor], Tensor]:
    """A `before_block` hook for tokens [len(layers), n, width] and increasing 0-based layers:
    before layers[0] tokens[0] is inserted before index `position`; before layers[k] the n
    tokens there become tokens[k] (beta 1) or beta * tokens[k] + (1 - beta) * their previous
    output. Between representation layers the tokens pass through the blocks untouched."""
    if len(layers) != tokens.shape[0]:
        raise ValueError(f"{tokens.shape[0]} token sets for {len(layers)} layers")
    index = {layer: k for k, layer in enumerate(layers)}

    def before_block(layer: int, x: Tensor) -> Tensor:
        k = index.get(layer)
        if k is None:
            return x
        if k == 0:
            return insert_tokens(x, position, tokens[0])
        if beta == 1:
            return replace_tokens(x, position, tokens[k])
        return blend_tokens(x, position, tokens[k], beta)

    return before_block


class FrozenTextPrefix:
    """The text states entering the first token layer of frozen prompt embeddings (the hand-written
    prompts of MMRL and DeAR): nothing learnable acts below that layer, so they are computed once
    per device and autocast setting and reused by every step; the features are those of the whole
    tower, for the work of its upper layers (the official code reruns all of it)."""

    def __init__(self, clip: ClipBackbone, layer: int):
        self.clip, self.layer = clip, layer
        self._states: dict[tuple, Tensor] = {}

    def __call__(self, embeddings: Tensor, eot_index: Tensor) -> Tensor:
        device = embeddings.device
        key = (str(device), torch.is_autocast_enabled(device.type), torch.get_autocast_dtype(device.type))
        if key not in self._states:
            with torch.no_grad():
                self._states[key] = self.clip.text_states(embeddings, eot_index, self.layer)
        return self._states[key]


def representation_features(clip: ClipBackbone, states: Tensor, position: int, n: int, projection: Tensor) -> Tensor:
    """[B, embed_dim]: ln_post of the n tokens at `position` of the final vision states [B, L, width],
    averaged over the tokens, times `projection` [width, embed_dim] (the official x_rep)."""
    tokens = clip.image_norm(states[:, position:position + n])
    return tokens.mean(dim=1) @ projection.to(tokens.dtype)


def logit_scale(clip: ClipBackbone, fixed: float) -> Tensor | float:
    """The logits' scale (LOGIT_SCALE): `fixed` (the official MMRL code's 100.), or with 0 the
    checkpoint's logit_scale.exp() (100 on OpenAI's weights; a random init's 14.3, tiny-attr's own)."""
    return fixed if fixed > 0 else clip.logit_scale.exp()


def check_logit_scale(node: str, value: float) -> None:
    """TRAINER.<node>.LOGIT_SCALE: a fixed scale > 0, or 0 for the checkpoint's (`logit_scale`)."""
    if value < 0:
        raise ConfigError(f"TRAINER.{node}.LOGIT_SCALE must be > 0 (a fixed scale, officially 100) or 0 "
                          f"(the checkpoint's logit_scale.exp()), got {value}")


def settings_overrides(node: str, settings: dict) -> list[str]:
    """Per-dataset settings as KEY VALUE pairs under TRAINER.<node>, merged before the command line
    (engine.config.dataset_overrides)."""
    return [item for key, value in settings.items() for item in (f"TRAINER.{node}.{key}", repr(value))]


def settings_report(node_cfg, settings: dict) -> str:
    """The per-dataset settings for the log, each with the command line's override if there is one."""
    return "; ".join(f"{k} {v}" if node_cfg[k] == v else f"{k} {v}, overridden on the command line: {node_cfg[k]}"
                     for k, v in settings.items())


def scores_fused(task: str, subsample: str, dataset: str) -> bool:
    """MMRL's decoupled inference (the official `test`): whether evaluation scores the fused
    (class + representation) logits, else the class-token logits alone.

    B2N: fused on the base classes only (new classes and "all": class logits); FS: fused;
    CD: fused on the source, ImageNet, and class logits on every target (the ImageNet variants too).
    """
    if task == "B2N":
        return subsample == "base"
    if task == "FS":
        return True
    if task == "CD":
        return dataset == "ImageNet"
    raise ConfigError(f"TASK must be one of {', '.join(TASKS)} (base-to-new, few-shot, cross-dataset), got {task!r}")
