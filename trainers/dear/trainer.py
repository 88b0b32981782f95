"""The DeAR trainer (TRAINER.DEAR.*).

Confirmed by the paper (arXiv 2603.01111): frozen CLIP ViT-B/16; attribute tokens (one per core
attribute) after the patch tokens from layer J = 9, with input beta * token + (1 - beta) *
previous output at each deeper layer; K text tokens after the start token (EOT index shifted
by K) on a hand-written template; role-based attention masks from Concept Entropy; f_cls through
the frozen projection, f_attr,k through a learnable projection initialised from CLIP's; one
logit set per path fused with alpha = softmax(w), learned on base classes and kept for novel
ones; loss CE(fused) + LAMBDA_REG * [(1 - cos(f_cls, f_cls^CLIP)) + (1 - cos(t, t^CLIP))]
+ LAMBDA_FUSION * (-log alpha_cls).

Inferred where the paper is silent (each a config key; see docs/DEAR.md):
  - token generation as MMRL++: shared latent [max(A, K), REP_DIM] (REP_DIM 0 = embed_dim),
    shared map + per-layer rank-RES_LORA_DIM residual and bias per tower;
  - BETA 0.9 (MMRL++); the text side uses the same blend;
  - TEXT_J 0: text tokens enter as many layers from the end as the vision tokens;
  - attribute tokens attend to each other in every head (masks only cut original <-> attribute);
  - ATTR_PROJ_RANK 0: one learnable projection shared by all attribute tokens, a full copy of
    CLIP's (> 0: MMRL++'s frozen projection plus a low-rank residual);
  - FUSION_CLS_INIT 0.7: alpha starts at MMRL++'s CLS weight, the rest split evenly;
  - LAMBDA_REG 1.0 (MMRL++'s REG_WEIGHT), LAMBDA_FUSION 0.1; the regulariser's f_cls^CLIP is
    the frozen CLIP image feature of the same augmented image, t^CLIP the template's feature;
  - FUSION mmrl: evaluation by MMRL's decoupled-inference rule on TASK (trainers/representation.py:
    fused on base classes, few-shot and the ImageNet source; CLS alone on new classes and
    cross-dataset targets);
  - recipe (configs): AdamW, lr 1e-3, cosine, one constant warmup epoch at 1e-5, 10 epochs
    (5 for ImageNet), batch 4, RRCROP_SCALE (0.5, 1), PREC amp;
  - ROLE_MAP auto: Concept Entropy on the run's training images (at most AUTO_MAX_IMAGES),
    AUTO_N_TEXTS 20 TextSpan texts per head over our labelled pool, AUTO_WEIGHTING count,
    AUTO_THRESHOLDS tertiles
    (the analysis' own inferred choices are listed in headroles/ and docs/DEAR.md).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch
import torch.nn.functional as F

from backbone import ClipBackbone
from engine.optim import build_lr_scheduler, build_optimizer
from engine.registry import TRAINER_REGISTRY
from headroles.concepts import WEIGHTINGS
from headroles.rolemap import HOW_TO_MAKE, RoleMap, RoleMapError, read_role_map
from headroles.roles import THRESHOLD_MODES
from trainers.common import ClipTrainer, accuracy
from trainers.dear.auto import auto_role_map
from trainers.dear.masks import MASK_MODES, role_masks
from trainers.dear.model import FUSIONS, DeARCLIP, DeAROutput, DeARSettings
from trainers.representation import scores_fused
from trainers.templates import class_prompts

ROLE_MAP_COPY = "role_map.json"


def fused_at_eval(fusion: str, task: str, subsample: str, dataset: str) -> bool:
    """Whether evaluation uses the fused logits (else the CLS path alone); mmrl: MMRL's rule."""
    if fusion != "mmrl":
        return fusion == "learned"
    return scores_fused(task, subsample, dataset)


def deep_layers(clip: ClipBackbone, j: int, text_j: int) -> tuple[int, int]:
    """0-based first deep layer of each tower from the 1-based TRAINER.DEAR.J / TEXT_J."""
    if not 1 <= j <= clip.vision_layers:
        raise ValueError(f"TRAINER.DEAR.J={j} must be a 1-based vision layer in 1..{clip.vision_layers}")
    if text_j <= 0:
        text_j = clip.text_layers - (clip.vision_layers - j)
    if not 1 <= text_j <= clip.text_layers:
        raise ValueError(
            f"Text tokens would enter at layer {text_j}, outside 1..{clip.text_layers}; set TRAINER.DEAR.TEXT_J"
        )
    return j - 1, text_j - 1


def dear_loss(out: DeAROutput, labels: torch.Tensor, frozen_image: torch.Tensor, frozen_text: torch.Tensor,
              alpha_cls: torch.Tensor, lambda_reg: float, lambda_fusion: float) -> dict[str, torch.Tensor]:
    ce = F.cross_entropy(out.logits, labels)
    reg_image = 1 - F.cosine_similarity(out.cls_features.float(), frozen_image.float(), dim=-1).mean()
    reg_text = 1 - F.cosine_similarity(out.text_features.float(), frozen_text.float(), dim=-1).mean()
    fusion = -alpha_cls.log()
    total = ce + lambda_reg * (reg_image + reg_text) + lambda_fusion * fusion
    return {"loss": total, "ce": ce, "reg_image": reg_image, "reg_text": reg_text, "fusion": fusion}


def learnable_counts(model: DeARCLIP) -> dict[str, int]:
    """Learnable parameters by component (top-level attribute of the model)."""
    counts: dict[str, int] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            key = name.split(".")[0] if not name.startswith("tokens.") else ".".join(name.split(".")[:2])
            counts[key] = counts.get(key, 0) + p.numel()
    return counts


@TRAINER_REGISTRY.register()
class DeAR(ClipTrainer):
    CONFIG_NODE = "DEAR"
    DEFAULT_PREC = "amp"
    CONFIG = {
        "PREC": "amp",
        "ROLE_MAP": "",  # path to tools/head_roles.py's JSON, or "auto"
        "AUTO_DIR": "output/head_roles/auto",  # where "auto" caches its analyses
        "AUTO_MAX_IMAGES": 1000,
        "AUTO_N_TEXTS": 20,
        "AUTO_THRESHOLDS": "tertiles",
        "AUTO_WEIGHTING": "count",  # P(l,h) from text counts or from explained variance
        "ATTRIBUTES": ["color", "shape", "texture", "object", "position"],
        "ATTR_TOKENS": True,
        "MASK": "role",  # role | generalization (only Generalization heads masked) | none
        "FUSION": "learned",  # learned | cls | mmrl
        "FUSION_CLS_INIT": 0.7,
        "LAMBDA_REG": 1.0,
        "LAMBDA_FUSION": 0.1,
        "BETA": 0.9,
        "K": 5,  # text tokens
        "J": 9,  # 1-based vision layer where the attribute tokens enter
        "TEXT_J": 0,  # 1-based text layer; 0 = as far from the end as J
        "REP_DIM": 0,  # shared latent width; 0 = the backbone's embed_dim
        "RES_LORA_DIM": 4,
        "ATTR_PROJ_RANK": 0,
    }
    SWEEP_CONFIGS = {"base2new": "vit_b16", "base2new:imagenet": "vit_b16_imagenet", "xd": "vit_b16_cross_datasets",
                     "fewshot": "vit_b16_few_shot", "fewshot:imagenet": "vit_b16_imagenet", "tiny": "tiny_ep10_batch4"}

    @classmethod
    def sweep_opts(cls, step: str, dataset: str, model_dir: str) -> list[str]:
        """As scripts/dear/*.sh: evaluations use the role map the model was trained with, and the
        cross-dataset and few-shot runs name their TASK (FUSION mmrl scores by it)."""
        role_map = ["TRAINER.DEAR.ROLE_MAP", f"{model_dir}/role_map.json"]
        task = {"xd_train": ["TASK", "CD"], "xd_test": ["TASK", "CD"], "few_shot": ["TASK", "FS"]}.get(step, [])
        return task + role_map if step.endswith("_test") else task

    def check_cfg(self, cfg) -> None:
        super().check_cfg(cfg)
        c = cfg.TRAINER.DEAR
        for key, value, choices in (("FUSION", c.FUSION, FUSIONS), ("MASK", c.MASK, MASK_MODES),
                                    ("AUTO_THRESHOLDS", c.AUTO_THRESHOLDS, THRESHOLD_MODES),
                                    ("AUTO_WEIGHTING", c.AUTO_WEIGHTING, WEIGHTINGS)):
            if value not in choices:
                raise ValueError(f"TRAINER.DEAR.{key} must be one of {choices}, got {value!r}")
        if len(set(c.ATTRIBUTES)) != len(c.ATTRIBUTES) or not c.ATTRIBUTES:
            raise ValueError(f"TRAINER.DEAR.ATTRIBUTES must be distinct and non-empty, got {list(c.ATTRIBUTES)}")
        if not 0 <= c.BETA <= 1 or not 0 < c.FUSION_CLS_INIT < 1:
            raise ValueError("TRAINER.DEAR.BETA must be in [0, 1] and FUSION_CLS_INIT in (0, 1)")
        if not c.ATTR_TOKENS and c.K == 0:
            raise ValueError("TRAINER.DEAR.ATTR_TOKENS False with K 0 leaves nothing to learn; keep one of them")
        if c.ATTR_TOKENS and c.MASK != "none" and not c.ROLE_MAP:
            raise RoleMapError(f"TRAINER.DEAR.ROLE_MAP is empty: {HOW_TO_MAKE.format(path='head_roles/<backbone>.json')}")

    # ---- model -------------------------------------------------------------------------
    def build_model(self) -> None:
        cfg, c = self.cfg, self.cfg.TRAINER.DEAR
        clip = self.load_backbone()
        first, text_first = deep_layers(clip, c.J, c.TEXT_J)
        settings = DeARSettings(
            attributes=tuple(c.ATTRIBUTES), attr_tokens=c.ATTR_TOKENS, n_text=c.K,
            first_layer=first, text_first_layer=text_first, beta=c.BETA,
            rep_dim=c.REP_DIM or clip.embed_dim, rank=c.RES_LORA_DIM, attr_proj_rank=c.ATTR_PROJ_RANK,
            fusion=c.FUSION, fusion_cls_init=c.FUSION_CLS_INIT,
        )
        self.role_map = self.resolve_role_map(clip) if c.ATTR_TOKENS and c.MASK != "none" else None
        prompts = class_prompts(cfg.DATASET.NAME, self.dm.dataset.classnames)
        print(f"Prompts: {prompts[:3]}{' ...' if len(prompts) > 3 else ''}")
        self.model = DeARCLIP(clip, prompts, settings, self.masks_for(clip, self.role_map))
        self.model.eval_fused = settings.paths > 1 and fused_at_eval(
            c.FUSION, cfg.TASK, cfg.DATASET.SUBSAMPLE_CLASSES, cfg.DATASET.NAME)
        print(f"Evaluation logits: {'fused paths' if self.model.eval_fused else 'CLS path only'}")
        self.load_init_weights(self.model)
        counts = learnable_counts(self.model)
        print(f"DeAR learnable parameters: {sum(counts.values()):,} ({', '.join(f'{k} {v:,}' for k, v in counts.items())})")
        optim = build_optimizer(self.model, cfg.OPTIM)
        self.register_model("dear", self.model, optim, build_lr_scheduler(optim, cfg.OPTIM))

    def masks_for(self, clip: ClipBackbone, role_map: RoleMap | None) -> torch.Tensor | None:
        if role_map is None:
            return None
        c = self.cfg.TRAINER.DEAR
        layers = list(range(c.J, clip.vision_layers + 1))
        masks = role_masks(role_map, layers, clip.vision_heads, list(c.ATTRIBUTES), 1 + clip.num_patches, c.MASK, clip.dtype)
        counts = role_map.counts()
        print(f"Role map {role_map.source}: {counts} over layers {role_map.layers}; masking layers {layers} ({c.MASK})")
        return masks.to(clip.device)

    def resolve_role_map(self, clip: ClipBackbone) -> RoleMap:
        """Read TRAINER.DEAR.ROLE_MAP (or make it: auto) and keep a copy beside the run's checkpoints."""
        c = self.cfg.TRAINER.DEAR
        path = auto_role_map(self.cfg, clip, self.dm.dataset.train_x) if c.ROLE_MAP == "auto" else Path(c.ROLE_MAP)
        role_map = read_role_map(path)
        copy = Path(self.output_dir) / ROLE_MAP_COPY
        copy.parent.mkdir(parents=True, exist_ok=True)
        if path.resolve() != copy.resolve():
            shutil.copyfile(path, copy)
        return role_map

    def load_model(self, directory: str | None, epoch: int | None = None) -> None:
        """Learnable weights of another run (e.g. base classes -> new classes); the masks
        follow the role map those weights were trained with, kept in that run's folder."""
        super().load_model(directory, epoch)
        trained = Path(directory or "") / ROLE_MAP_COPY
        if self.role_map is None or not trained.is_file():
            return
        role_map = read_role_map(trained)
        if role_map.heads != self.role_map.heads:
            print(f"Using the role map the weights were trained with ({trained}), not {self.role_map.source}")
            self.role_map = role_map
            self.model.masks = self.masks_for(self.model.clip, role_map)

    # ---- training ----------------------------------------------------------------------
    def forward_backward(self, batch: dict) -> dict:
        images, labels = self.parse_batch_train(batch)
        c = self.cfg.TRAINER.DEAR
        with self.autocast():
            out = self.model.forward_train(images)
            with torch.no_grad():
                frozen_image = self.model.clip.encode_image(images.to(self.model.clip.dtype))
            alpha = self.model.fusion_alpha()
            losses = dear_loss(out, labels, frozen_image, self.model.frozen_text, alpha[0], c.LAMBDA_REG, c.LAMBDA_FUSION)
        self.model_backward_and_update(losses["loss"])
        summary = {k: v.item() for k, v in losses.items()}
        summary["acc"] = accuracy(out.logits, labels)
        summary["alpha_cls"] = alpha[0].item()
        return summary
