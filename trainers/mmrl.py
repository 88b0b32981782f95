"""MMRL (Guo & Gu, CVPR 2025) and MMRL++ (Guo & Gu, IJCV 2026): a shared learnable
representation space whose tokens enter the higher layers of both frozen CLIP towers.

Following the official code (yunncheng/MMRL@27d8821: trainers/mmrl*.py, clip/model_mmrl*.py,
trainers/config.py, configs/trainers/MMRL*/, scripts/mmrl*/):
  - N_REP_TOKENS tokens from the representation space (trainers/representation.py) enter both
    towers right after the class/start token before the first of REP_LAYERS (1-based, the same
    layers in both towers) and are re-mapped before each later one (MMRL: replaced; MMRL++:
    BETA-blended with their previous output); the text features are pooled at EOT + N_REP_TOKENS;
  - class features: ln_post(CLS) through CLIP's frozen projection; representation features:
    ln_post of the representation tokens, averaged, through the representation projection
    (MMRL: learnable, N(0, width^-1/2); MMRL++: frozen projection + rank-PROJ_LORA_DIM residual);
  - logits = scale * cos(class, text), logits_rep = scale * cos(rep, text) with the same text
    features; fused = ALPHA * logits + (1 - ALPHA) * logits_rep;
  - loss = ALPHA * CE(logits) + (1 - ALPHA) * CE(logits_rep) + REG_WEIGHT * [(1 - cos(class
    features, frozen CLIP's of the same image)) + (1 - cos(text features, frozen CLIP's of the
    hand-written template))];
  - evaluation by TASK (representation.scores_fused); per-dataset settings from the official
    trainers/config.py, merged after the config files and before the command line.
The logits are scaled by LOGIT_SCALE, the official fixed 100 by default (OpenAI's CLIP stores
exp(logit_scale) = 100, so there the two agree; other checkpoints store their own, e.g. 14.3 for a
random init); LOGIT_SCALE 0 takes the checkpoint's logit_scale.exp() (the tiny-attr configs, whose
model learned its own). Ours, not the official code's: frozen CLIP is the same backbone run without
hooks (the official loads a second copy); the frozen text features are encoded at the first
training step (eval-only runs skip them).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backbone import ClipBackbone, TowerHooks
from engine.errors import ConfigError
from engine.optim import build_lr_scheduler, build_optimizer
from engine.registry import TRAINER_REGISTRY
from trainers.common import ClipTrainer, TextClassifier, accuracy
from trainers.representation import (
    TASKS, FrozenTextPrefix, RepresentationSpace, check_logit_scale, logit_scale, representation_features,
    residual_factors, scores_fused, settings_overrides, settings_report, token_hook,
)
from trainers.templates import class_prompts

# trainers/config.py of the official code: per-dataset settings, by trainer and TASK.
MMRL_DATASET_SETTINGS = {  # every TASK
    "StanfordCars": {"REG_WEIGHT": 7.0}, "FGVCAircraft": {"REG_WEIGHT": 6.0}, "SUN397": {"REG_WEIGHT": 6.0},
    "DescribableTextures": {"REG_WEIGHT": 6.0}, "Food101": {"REG_WEIGHT": 5.0}, "OxfordFlowers": {"REG_WEIGHT": 4.0},
    "UCF101": {"REG_WEIGHT": 3.0}, "ImageNet": {"REG_WEIGHT": 0.5}, "Caltech101": {"REG_WEIGHT": 0.5},
    "OxfordPets": {"REG_WEIGHT": 0.2}, "EuroSAT": {"REP_DIM": 2048, "REG_WEIGHT": 0.01},
}
_MMRLPP_B2N_FS = {
    "ImageNet": (0.9, 0.2), "FGVCAircraft": (0.9, 2.0), "UCF101": (0.9, 3.0), "DescribableTextures": (0.9, 7.0),
    "OxfordPets": (0.7, 0.01), "StanfordCars": (0.7, 6.0), "Caltech101": (0.6, 3.0), "SUN397": (0.5, 3.0),
    "OxfordFlowers": (0.4, 7.0), "EuroSAT": (0.2, 0.01), "Food101": (0.1, 1.0),
}
_MMRLPP_CD_BETA = {
    "ImageNetV2": 0.9, "ImageNetR": 0.9, "ImageNetA": 0.8, "ImageNetSketch": 0.7, "FGVCAircraft": 0.9,
    "UCF101": 0.9, "SUN397": 0.7, "OxfordPets": 0.6, "Caltech101": 0.6, "DescribableTextures": 0.5,
    "OxfordFlowers": 0.4, "StanfordCars": 0.3, "EuroSAT": 0.3, "Food101": 0.3,
}
MMRLPP_DATASET_SETTINGS = {
    "B2N": {d: {"BETA": b, "REG_WEIGHT": r} for d, (b, r) in _MMRLPP_B2N_FS.items()},
    "FS": {d: {"BETA": b, "REG_WEIGHT": r} for d, (b, r) in _MMRLPP_B2N_FS.items()},
    "CD": {"ImageNet": {"BETA": 0.9, "REG_WEIGHT": 0.1}, **{d: {"BETA": b} for d, b in _MMRLPP_CD_BETA.items()}},
}


@dataclass(frozen=True)
class MMRLSettings:
    """Model switches; `layers` are 0-based blocks of both towers."""

    n_tokens: int
    layers: tuple[int, ...]
    rep_dim: int
    alpha: float
    beta: float = 1.0  # 1: tokens replaced at every representation layer (MMRL)
    shared: bool = False  # MMRL: an independent map per layer; MMRL++: shared + low-rank residuals
    res_rank: int = 0
    proj_rank: int = 0  # 0: MMRL's learnable projection; > 0: MMRL++'s frozen one + low-rank residual
    logit_scale: float = 0.0  # the logits' scale; 0: the checkpoint's logit_scale.exp()


@dataclass
class MMRLOutput:
    logits: Tensor  # [B, C] class features vs text
    logits_rep: Tensor  # [B, C] representation features vs text
    logits_fused: Tensor  # alpha * logits + (1 - alpha) * logits_rep
    image: Tensor  # [B, D] class features, normalised
    text: Tensor  # [C, D] text features, normalised


class MMRLCLIP(TextClassifier):
    """Learnable: the representation space (latent + per-layer maps into both towers) and the
    representation projection. Nothing depends on the class set (base weights load for new
    classes); the hand-written prompts and the frozen text features are buffers."""

    def __init__(self, clip: ClipBackbone, prompts: list[str], settings: MMRLSettings):
        super().__init__(clip)
        s = self.settings = settings
        width, layers = clip.vision_width, len(s.layers)
        self.representation = RepresentationSpace(
            s.n_tokens, s.n_tokens, s.rep_dim, width, clip.text_width, layers, layers, s.res_rank, s.shared)
        if s.proj_rank == 0:
            self.proj_rep = nn.Parameter(width ** -0.5 * torch.randn(width, clip.embed_dim))
        else:
            self.register_buffer("proj_base", clip.image_projection.detach().float().clone(), persistent=False)
            down, up = residual_factors(width, clip.embed_dim, s.proj_rank)
            self.proj_rep_down, self.proj_rep_up = nn.Parameter(down), nn.Parameter(up)
        ids = clip.tokenize(prompts)
        with torch.no_grad():
            self.register_buffer("prompt_embeddings", clip.embed_tokens(ids), persistent=False)
        self.register_buffer("eot_index", clip.eot_index(ids), persistent=False)
        self.register_buffer("ids", ids, persistent=False)
        self.register_buffer("frozen_text", None, persistent=False)
        self.text_prefix = FrozenTextPrefix(clip, s.layers[0])
        self.eval_fused = True
        self.to(clip.device)  # the learnable tensors are drawn on the CPU; the backbone may be on a GPU

    def projection(self) -> Tensor:
        """[vision_width, embed_dim] representation projection."""
        if self.settings.proj_rank == 0:
            return self.proj_rep
        return self.proj_base + self.proj_rep_down @ self.proj_rep_up

    # ---- towers ------------------------------------------------------------------------
    def text_features(self, share_prefix: bool = True) -> Tensor:
        """[C, embed_dim] class text features with the representation tokens after the start token;
        with `share_prefix`, from the frozen states below the first representation layer, computed
        once (the same numbers)."""
        s = self.settings
        hooks = TowerHooks(before_block=token_hook(self.representation.text(), s.layers, 1, s.beta),
                           eot_shift=s.n_tokens)
        if not share_prefix:
            return self.clip.forward_text(self.prompt_embeddings, self.eot_index, hooks).features
        states = self.text_prefix(self.prompt_embeddings, self.eot_index)
        return self.clip.forward_text(states, self.eot_index, hooks, start_layer=s.layers[0]).features

    def image_prefix(self, images: Tensor) -> Tensor:
        """The frozen image states entering the first representation layer: the same for the
        prompted pass and frozen CLIP's, so a training step computes them once."""
        with torch.no_grad():
            return self.clip.image_states(images.to(self.clip.dtype), self.settings.layers[0])

    def image_features(self, images: Tensor, prefix: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Class features (frozen projection) and representation features, [B, embed_dim] each;
        from `image_prefix(images)` when given."""
        s = self.settings
        hooks = TowerHooks(before_block=token_hook(self.representation.vision(), s.layers, 1, s.beta))
        if prefix is None:
            out = self.clip.forward_image(images.to(self.clip.dtype), hooks)
        else:
            out = self.clip.forward_image(prefix, hooks, start_layer=s.layers[0])
        return out.features, representation_features(self.clip, out.tokens, 1, s.n_tokens, self.projection())

    # ---- logits ------------------------------------------------------------------------
    def outputs(self, images: Tensor, text: Tensor, prefix: Tensor | None = None) -> MMRLOutput:
        cls, rep = self.image_features(images, prefix)
        scale = logit_scale(self.clip, self.settings.logit_scale)
        image, rep = F.normalize(cls.float(), dim=-1), F.normalize(rep.float(), dim=-1)
        logits, logits_rep = scale * image @ text.t(), scale * rep @ text.t()
        alpha = self.settings.alpha
        return MMRLOutput(logits, logits_rep, alpha * logits + (1 - alpha) * logits_rep, image, text)

    def forward_train(self, images: Tensor, prefix: Tensor | None = None, share_prefix: bool = True) -> MMRLOutput:
        """Training outputs; `prefix`: the images' frozen states below the first representation layer
        (`image_prefix`), `share_prefix`: the text side's, computed once."""
        return self.outputs(images, F.normalize(self.text_features(share_prefix).float(), dim=-1), prefix)

    def forward(self, images: Tensor) -> Tensor:
        """Evaluation logits: fused, or the class-feature logits alone (`eval_fused`, from TASK)."""
        text = self._text_cache if self._text_cache is not None else F.normalize(self.text_features(), dim=-1)
        out = self.outputs(images, text.float())
        return out.logits_fused if self.eval_fused else out.logits

    # ---- frozen CLIP -------------------------------------------------------------------
    @torch.no_grad()
    def frozen_features(self, images: Tensor, prefix: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Frozen CLIP's image features of `images` (from `image_prefix(images)` when given) and
        text features of the hand-written prompts, the regularisers' targets: the backbone without
        hooks. The text side is encoded once, outside autocast (the official encodes it in fp32 at
        build time)."""
        if self.frozen_text is None:
            with torch.autocast(self.clip.device.type, enabled=False):
                self.frozen_text = self.clip.encode_text(self.ids).float()
        if prefix is None:
            return self.clip.encode_image(images.to(self.clip.dtype)), self.frozen_text
        return self.clip.forward_image(prefix, start_layer=self.settings.layers[0]).features, self.frozen_text


def mmrl_loss(out: MMRLOutput, labels: Tensor, frozen_image: Tensor, frozen_text: Tensor,
              alpha: float, reg_weight: float) -> dict[str, Tensor]:
    """The official MMRL_Loss: alpha * CE(class) + (1 - alpha) * CE(rep) + reg_weight * (image and
    text cosine regularisers against frozen CLIP)."""
    terms = {
        "ce": F.cross_entropy(out.logits.float(), labels),
        "ce_rep": F.cross_entropy(out.logits_rep.float(), labels),
        "reg_image": 1 - F.cosine_similarity(out.image.float(), frozen_image.float(), dim=1).mean(),
        "reg_text": 1 - F.cosine_similarity(out.text.float(), frozen_text.float(), dim=1).mean(),
    }
    terms["loss"] = (alpha * terms["ce"] + (1 - alpha) * terms["ce_rep"]
                     + reg_weight * terms["reg_image"] + reg_weight * terms["reg_text"])
    return terms


def learnable_counts(model: nn.Module) -> dict[str, int]:
    """Learnable parameters by component: the latent, each tower's maps, the projection."""
    counts: dict[str, int] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            parts = name.split(".")
            key = ".".join(parts[:2]) if parts[0] == "representation" else parts[0]
            counts[key] = counts.get(key, 0) + p.numel()
    return counts


def representation_layers(clip: ClipBackbone, rep_layers, node: str) -> tuple[int, ...]:
    """0-based blocks from the 1-based REP_LAYERS, which both towers must have."""
    layers = [int(layer) for layer in rep_layers]
    depth = min(clip.vision_layers, clip.text_layers)
    if not layers or layers != sorted(set(layers)) or layers[0] < 1 or layers[-1] > depth:
        raise ConfigError(f"TRAINER.{node}.REP_LAYERS must be increasing 1-based layers that both towers have "
                          f"(1..{depth} here), got {layers}")
    return tuple(layer - 1 for layer in layers)


@TRAINER_REGISTRY.register()
class MMRL(ClipTrainer):
    CONFIG_NODE = "MMRL"
    DEFAULT_PREC = "amp"
    CONFIG = {"ALPHA": 0.7, "REG_WEIGHT": 1.0, "N_REP_TOKENS": 5, "REP_LAYERS": [6, 7, 8, 9, 10, 11, 12],
              "REP_DIM": 512, "PREC": "amp",
              "LOGIT_SCALE": 100.0}  # the official fixed scale; 0 = the checkpoint's logit_scale.exp()
    SWEEP_CONFIGS = {"base2new": "vit_b16", "base2new:imagenet": "vit_b16_imagenet", "xd": "vit_b16_cross_datasets",
                     "fewshot": "vit_b16_few_shot", "fewshot:imagenet": "vit_b16_imagenet", "tiny": "tiny_ep10_batch4"}
    # What the official cross-dataset scripts add on the command line.
    XD_OPTS = {"xd_train": {"REG_WEIGHT": 0.2}, "xd_test": {"REG_WEIGHT": 0.2, "REP_DIM": 512}}

    @classmethod
    def dataset_settings(cls, task: str, dataset: str) -> dict:
        if task not in TASKS:
            raise ConfigError(f"TASK must be one of {', '.join(TASKS)} (base-to-new, few-shot, cross-dataset), got {task!r}")
        return dict(MMRL_DATASET_SETTINGS.get(dataset, {}))

    @classmethod
    def dataset_overrides(cls, cfg) -> list[str]:
        """KEY VALUE pairs of the official per-dataset settings (engine.config.dataset_overrides)."""
        return settings_overrides(cls.CONFIG_NODE, cls.dataset_settings(cfg.TASK, cfg.DATASET.NAME))

    @classmethod
    def sweep_opts(cls, step: str, dataset: str, model_dir: str) -> list[str]:
        """As scripts/mmrl*/: every run names its TASK; cross-dataset runs add XD_OPTS."""
        task = {"base2new": "B2N", "xd": "CD", "few": "FS"}[step.split("_")[0]]
        extra = cls.XD_OPTS.get(step, {})
        return ["TASK", task, *(item for k, v in extra.items() for item in (f"TRAINER.{cls.CONFIG_NODE}.{k}", repr(v)))]

    def check_cfg(self, cfg) -> None:
        super().check_cfg(cfg)
        c = cfg.TRAINER[self.CONFIG_NODE]
        self.dataset_settings(cfg.TASK, cfg.DATASET.NAME)  # validates TASK
        check_logit_scale(self.CONFIG_NODE, c.LOGIT_SCALE)
        if not 0 <= c.ALPHA <= 1 or c.N_REP_TOKENS < 1 or c.REP_DIM < 1:
            raise ConfigError(f"TRAINER.{self.CONFIG_NODE}: ALPHA must be in [0, 1], N_REP_TOKENS and REP_DIM >= 1; "
                              f"got {c.ALPHA}, {c.N_REP_TOKENS}, {c.REP_DIM}")

    def settings(self, layers: tuple[int, ...]) -> MMRLSettings:
        c = self.cfg.TRAINER.MMRL
        return MMRLSettings(n_tokens=c.N_REP_TOKENS, layers=layers, rep_dim=c.REP_DIM, alpha=c.ALPHA,
                            logit_scale=c.LOGIT_SCALE)

    def report_dataset_settings(self) -> None:
        cfg, node = self.cfg, self.cfg.TRAINER[self.CONFIG_NODE]
        settings = self.dataset_settings(cfg.TASK, cfg.DATASET.NAME)
        where = f"{cfg.DATASET.NAME}, TASK {cfg.TASK}"
        if not settings:
            print(f"{self.CONFIG_NODE} per-dataset settings (official trainers/config.py): none for {where}")
            return
        print(f"{self.CONFIG_NODE} per-dataset settings (official trainers/config.py) for {where}: "
              f"{settings_report(node, settings)}")

    def build_model(self) -> None:
        cfg = self.cfg
        self.report_dataset_settings()
        clip = self.load_backbone()
        settings = self.settings(representation_layers(clip, cfg.TRAINER[self.CONFIG_NODE].REP_LAYERS, self.CONFIG_NODE))
        prompts = class_prompts(cfg.DATASET.NAME, self.dm.dataset.classnames)
        print(f"Prompts: {prompts[:3]}{' ...' if len(prompts) > 3 else ''}")
        self.model = MMRLCLIP(clip, prompts, settings)
        self.model.eval_fused = scores_fused(cfg.TASK, cfg.DATASET.SUBSAMPLE_CLASSES, cfg.DATASET.NAME)
        print(f"Evaluation logits (TASK {cfg.TASK}, {cfg.DATASET.SUBSAMPLE_CLASSES} classes of {cfg.DATASET.NAME}): "
              f"{'fused class + representation' if self.model.eval_fused else 'class features only'}")
        self.load_init_weights(self.model)
        counts = learnable_counts(self.model)
        print(f"{self.CONFIG_NODE} learnable parameters: {sum(counts.values()):,} "
              f"({', '.join(f'{k} {v:,}' for k, v in counts.items())})")
        optim = build_optimizer(self.model, cfg.OPTIM)
        self.register_model(self.CONFIG_NODE.lower(), self.model, optim, build_lr_scheduler(optim, cfg.OPTIM))

    def training_losses(self, images: Tensor, labels: Tensor, share_prefix: bool = True) -> tuple[MMRLOutput, dict]:
        """The step's outputs and losses. With `share_prefix`, the frozen image states below the
        first representation layer are computed once for both passes, and the text side's once for
        every step (the same numbers as full passes: tests/test_prefix_sharing.py)."""
        c = self.cfg.TRAINER[self.CONFIG_NODE]
        with self.autocast():
            prefix = self.model.image_prefix(images) if share_prefix else None
            frozen_image, frozen_text = self.model.frozen_features(images, prefix)  # the regularisers' targets
            out = self.model.forward_train(images, prefix, share_prefix)
            return out, mmrl_loss(out, labels, frozen_image, frozen_text, c.ALPHA, c.REG_WEIGHT)

    def forward_backward(self, batch: dict) -> dict:
        images, labels = self.parse_batch_train(batch)
        out, losses = self.training_losses(images, labels)
        self.model_backward_and_update(losses["loss"])
        summary = {k: v.item() for k, v in losses.items()}
        summary["acc"] = accuracy(out.logits_fused, labels)
        return summary


@TRAINER_REGISTRY.register()
class MMRLpp(MMRL):
    """MMRL++: shared map + per-layer low-rank residual (SRRA), BETA blending across layers
    (PRC), the frozen projection plus a low-rank residual for the representation features."""

    CONFIG_NODE = "MMRLpp"
    CONFIG = {**MMRL.CONFIG, "BETA": 0.9, "PROJ_LORA_DIM": 64, "RES_LORA_DIM": 4}
    XD_OPTS = {}

    @classmethod
    def dataset_settings(cls, task: str, dataset: str) -> dict:
        super().dataset_settings(task, dataset)  # validates TASK
        return dict(MMRLPP_DATASET_SETTINGS[task].get(dataset, {}))

    def check_cfg(self, cfg) -> None:
        super().check_cfg(cfg)
        c = cfg.TRAINER.MMRLpp
        if not 0 <= c.BETA <= 1 or c.PROJ_LORA_DIM < 1 or c.RES_LORA_DIM < 0:
            raise ConfigError(f"TRAINER.MMRLpp: BETA must be in [0, 1], PROJ_LORA_DIM >= 1, RES_LORA_DIM >= 0; "
                              f"got {c.BETA}, {c.PROJ_LORA_DIM}, {c.RES_LORA_DIM}")

    def settings(self, layers: tuple[int, ...]) -> MMRLSettings:
        c = self.cfg.TRAINER.MMRLpp
        return MMRLSettings(n_tokens=c.N_REP_TOKENS, layers=layers, rep_dim=c.REP_DIM, alpha=c.ALPHA, beta=c.BETA,
                            shared=True, res_rank=c.RES_LORA_DIM, proj_rank=c.PROJ_LORA_DIM, logit_scale=c.LOGIT_SCALE)
