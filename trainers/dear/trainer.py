"""The DeAR trainer (TRAINER.DEAR.*).

Sources, each statement labelled: [abstract] the paper's abstract (arXiv 2603.01111, repeated in
the official README); [figures] Figures 1 and 2 of the paper and their captions (the official
repository wellsssssss/DeAR holds them and no code); [secondary] secondary notes, i.e. summaries
of the paper's method section (its full text was not available to us); [inferred] our choice
where those are silent, each a config key, listed in docs/DEAR.md.

  [abstract] a frozen pre-trained CLIP; the heads of the deep layers get a role (Attribute,
    Generalization, Mixed) from Concept Entropy; attribute tokens; a Role-Based Attention Mask
    that keeps Generalization heads isolated from task-specific knowledge; a task-adaptive
    fusion for inference.
  [figures] attribute tokens enter the vision tower at a deep layer J, text tokens the text tower
    right after the start (BOT) token; the vision layers after the insertion carry the role-based
    mask (Figure 2 labels layers J+1..; Figure 1 shows the mask on L9 H0, a Generalization head:
    CLS and patch tokens cannot interact with the attribute tokens); f_cls through CLIP's frozen
    projection, f_attr through a learnable one; one logit set per path, combined by learnable
    fusion weights; losses: CE on the fused logits, the CLS and text features regularised towards
    the frozen encoders' features, and a loss on the fusion weights.
  [secondary] ViT-B/16 with J = 9 (layers 9-12); at each deeper layer a token's input is
    beta * token + (1 - beta) * its previous output; K text tokens, the EOT index shifted by K;
    the attribute projection initialised from CLIP's; alpha = softmax(w), learned on the base
    classes and kept for novel ones; loss CE(fused) + LAMBDA_REG * [(1 - cos(f_cls, f_cls^CLIP)) +
    (1 - cos(t, t^CLIP))] + LAMBDA_FUSION * (-log alpha_cls); roles from one offline analysis
    of the frozen backbone (TextSpan texts per head, embedded with SBERT and clustered with
    HDBSCAN: 12 clusters, 5 of them core attributes).

[inferred] (each a key; docs/DEAR.md):
  - token generation as MMRL++: shared latent [max(A, K), REP_DIM] (REP_DIM 0 = embed_dim),
    shared map + per-layer rank-RES_LORA_DIM residual and bias per tower;
  - BETA 0.9 (MMRL++); the text side uses the same blend;
  - TEXT_J 0: text tokens enter as many layers from the end as the vision tokens;
  - ATTR_ATTENTION open: attribute tokens attend to each other in every head (`self`: only to
    themselves); the paper only describes original <-> attribute pairs;
  - FIRST_MASKED_LAYER J: masks from the insertion layer on (`J+1`: from the next one, as
    Figure 2's labels read; Figure 1's masked L9 H0 with J = 9 reads as J);
  - ATTR_PROJ_RANK 0: one learnable projection shared by all attribute tokens, a full copy of
    CLIP's (> 0: MMRL++'s frozen projection plus a low-rank residual);
  - FUSION_CLS_INIT 0.7: alpha starts at MMRL++'s CLS weight, the rest split evenly;
  - DATASET_SETTINGS mmrlpp: BETA and LAMBDA_REG per dataset and TASK from MMRL++'s official table
    (trainers/mmrl.py: its BETA and REG_WEIGHT), merged after the config files and before the command
    line; elsewhere (and with DATASET_SETTINGS none) the config's BETA 0.9 and LAMBDA_REG 1.0 (MMRL++'s
    defaults); LAMBDA_FUSION 0.1; the regulariser's f_cls^CLIP is the frozen CLIP image feature of the
    same augmented image, t^CLIP the template's feature;
  - LOGIT_SCALE 100.: the official MMRL++ code's fixed scale (0: the checkpoint's logit_scale.exp());
  - FUSION mmrl: evaluation by MMRL's decoupled-inference rule on TASK (trainers/representation.py:
    fused on base classes, few-shot and the ImageNet source; CLS alone on new classes and
    cross-dataset targets);
  - recipe (configs): MMRL++'s: AdamW, lr 1e-3, cosine, one constant warmup epoch at 1e-5, 10 epochs
    and batch 4 (ImageNet: 5 epochs, batch 32), RRCROP_SCALE (0.5, 1), PREC amp;
  - ROLE_MAP global on ANALYSIS_IMAGES = ImageNet's validation images (TextSpan's reference code
    analyses those; the paper does not say which images it used), our labelled pool and
    ANALYSIS_CLUSTER labels by default (`textspan` + `hdbscan` is the paper's reading),
    ANALYSIS_N_TEXTS 20, ANALYSIS_WEIGHTING count, ANALYSIS_THRESHOLDS tertiles (the analysis'
    own inferred choices are listed in headroles/ and docs/DEAR.md).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch
import torch.nn.functional as F

from backbone import ClipBackbone
from engine.errors import ConfigError, RunMismatchError
from engine.io import atomic_write
from engine.optim import build_lr_scheduler, build_optimizer
from engine.registry import TRAINER_REGISTRY
from headroles.concepts import CLUSTERINGS, WEIGHTINGS
from headroles.rolemap import HOW_TO_MAKE, RoleMap, check_weights, read_role_map
from headroles.roles import THRESHOLD_MODES
from trainers.common import ClipTrainer, accuracy
from trainers.dear.masks import ATTR_ATTENTIONS, MASK_MODES, role_masks
from trainers.dear.role_source import check_source, role_map_file
from trainers.dear.model import FUSIONS, DeARCLIP, DeAROutput, DeARSettings
from trainers.mmrl import MMRLPP_DATASET_SETTINGS
from trainers.representation import check_logit_scale, scores_fused, settings_overrides, settings_report
from trainers.templates import class_prompts

FIRST_MASKED_LAYERS = ("J", "J+1")
DATASET_SETTINGS = ("mmrlpp", "none")
MMRLPP_TO_DEAR = {"BETA": "BETA", "REG_WEIGHT": "LAMBDA_REG"}
ROLE_MAP_COPY = "role_map.json"


def fused_at_eval(fusion: str, task: str, subsample: str, dataset: str) -> bool:
    """Whether evaluation uses the fused logits (else the CLS path alone); mmrl: MMRL's rule."""
    if fusion != "mmrl":
        return fusion == "learned"
    return scores_fused(task, subsample, dataset)


def deep_layers(clip: ClipBackbone, j: int, text_j: int) -> tuple[int, int]:
    """0-based first deep layer of each tower from the 1-based TRAINER.DEAR.J / TEXT_J."""
    if not 1 <= j <= clip.vision_layers:
        raise ConfigError(f"TRAINER.DEAR.J={j} must be a 1-based vision layer in 1..{clip.vision_layers}")
    if text_j <= 0:
        text_j = clip.text_layers - (clip.vision_layers - j)
    if not 1 <= text_j <= clip.text_layers:
        raise ConfigError(
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
        "ROLE_MAP": "global",  # global (the backbone's map) | auto (this run's training images) | a JSON path or URL
        "ROLE_MAP_SHA256": "",  # the SHA-256 a role map file must have; required for an https:// or file:// URL
        "ANALYSIS_IMAGES": "configs/datasets/imagenet.yaml",  # global: a dataset config (under DATASET.ROOT) or a folder
        "ANALYSIS_SPLIT": "test",  # of a dataset config; ImageNet's test split is its validation images
        "ANALYSIS_MAX_IMAGES": 0,  # spread evenly over the images; 0 = all
        "ANALYSIS_TEXTS": "",  # text pool: "" = headroles/text_pool.tsv, "textspan" (download_textspan.py) or a path
        "ANALYSIS_CLUSTER": "labels",  # labels (the pool's) | hdbscan (SBERT + HDBSCAN)
        "ANALYSIS_MIN_CLUSTER_SIZE": 5,
        "ANALYSIS_N_TEXTS": 20,
        "ANALYSIS_THRESHOLDS": "tertiles",
        "ANALYSIS_WEIGHTING": "count",  # P(l,h) from text counts or from explained variance
        "ATTRIBUTES": ["color", "shape", "texture", "object", "position"],
        "ATTR_TOKENS": True,
        "MASK": "role",  # role | generalization (only Generalization heads masked) | none
        "ATTR_ATTENTION": "open",  # attribute <-> attribute: open | self (each token only itself)
        "FIRST_MASKED_LAYER": "J",  # J | J+1
        "FUSION": "learned",  # learned | cls | mmrl
        "FUSION_CLS_INIT": 0.7,
        "DATASET_SETTINGS": "mmrlpp",  # mmrlpp: BETA, LAMBDA_REG per dataset from MMRL++'s table | none
        "LOGIT_SCALE": 100.0,  # MMRL++'s fixed scale; 0 = the checkpoint's logit_scale.exp()
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
    EVAL_SILENT_KEYS = ("ROLE_MAP", "ANALYSIS_")  # evaluations use the map the weights were trained with
    SWEEP_CONFIGS = {"base2new": "vit_b16", "base2new:imagenet": "vit_b16_imagenet", "xd": "vit_b16_cross_datasets",
                     "fewshot": "vit_b16_few_shot", "fewshot:imagenet": "vit_b16_imagenet", "tiny": "tiny_ep10_batch4"}

    @classmethod
    def sweep_opts(cls, step: str, dataset: str, model_dir: str) -> list[str]:
        """As scripts/dear/*.sh: evaluations use the role map the model was trained with, and the
        cross-dataset and few-shot runs name their TASK (FUSION mmrl scores by it)."""
        role_map = ["TRAINER.DEAR.ROLE_MAP", f"{model_dir}/role_map.json"]
        task = {"xd_train": ["TASK", "CD"], "xd_test": ["TASK", "CD"], "few_shot": ["TASK", "FS"]}.get(step, [])
        return task + role_map if step.endswith("_test") else task

    @classmethod
    def dataset_settings(cls, cfg) -> dict[str, float]:
        """DATASET_SETTINGS mmrlpp: MMRL++'s official BETA and REG_WEIGHT for the run's dataset and TASK,
        as DeAR's BETA and LAMBDA_REG ({} for a dataset the table lacks, or with none)."""
        c = cfg.TRAINER.DEAR
        if c.DATASET_SETTINGS not in DATASET_SETTINGS:
            raise ConfigError(f"TRAINER.DEAR.DATASET_SETTINGS must be one of {DATASET_SETTINGS}, got {c.DATASET_SETTINGS!r}")
        if c.DATASET_SETTINGS == "none":
            return {}
        if cfg.TASK not in MMRLPP_DATASET_SETTINGS:
            raise ConfigError(f"TASK must be one of {', '.join(MMRLPP_DATASET_SETTINGS)}, got {cfg.TASK!r}")
        table = MMRLPP_DATASET_SETTINGS[cfg.TASK].get(cfg.DATASET.NAME, {})
        return {MMRLPP_TO_DEAR[k]: v for k, v in table.items()}

    @classmethod
    def dataset_overrides(cls, cfg) -> list[str]:
        """KEY VALUE pairs of `dataset_settings`, merged before the command line (engine.config)."""
        return settings_overrides("DEAR", cls.dataset_settings(cfg))

    def report_dataset_settings(self) -> None:
        cfg, c = self.cfg, self.cfg.TRAINER.DEAR
        settings = self.dataset_settings(cfg)
        where = f"{cfg.DATASET.NAME}, TASK {cfg.TASK}"
        if c.DATASET_SETTINGS == "none" or not settings:
            why = "DATASET_SETTINGS none" if c.DATASET_SETTINGS == "none" else f"none in MMRL++'s table for {where}"
            print(f"DeAR per-dataset settings: {why}; BETA {c.BETA}, LAMBDA_REG {c.LAMBDA_REG}")
            return
        print(f"DeAR per-dataset settings (MMRL++'s official table) for {where}: {settings_report(c, settings)}")

    @classmethod
    def check_inputs(cls, cfg, manifest: dict) -> None:
        """The role map's source (a URL fetched and checked, a file, global's images), before the run logs."""
        c = cfg.TRAINER.DEAR
        if c.ATTR_TOKENS and c.MASK != "none" and c.ROLE_MAP:
            check_source(cfg, manifest["weights"], quiet=True)

    def check_cfg(self, cfg) -> None:
        super().check_cfg(cfg)
        c = cfg.TRAINER.DEAR
        for key, choices in (("FUSION", FUSIONS), ("MASK", MASK_MODES), ("ATTR_ATTENTION", ATTR_ATTENTIONS),
                             ("FIRST_MASKED_LAYER", FIRST_MASKED_LAYERS), ("ANALYSIS_THRESHOLDS", THRESHOLD_MODES),
                             ("ANALYSIS_WEIGHTING", WEIGHTINGS), ("ANALYSIS_CLUSTER", CLUSTERINGS)):
            if c[key] not in choices:
                raise ConfigError(f"TRAINER.DEAR.{key} must be one of {choices}, got {c[key]!r}")
        if len(set(c.ATTRIBUTES)) != len(c.ATTRIBUTES) or not c.ATTRIBUTES:
            raise ConfigError(f"TRAINER.DEAR.ATTRIBUTES must be distinct and non-empty, got {list(c.ATTRIBUTES)}")
        self.dataset_settings(cfg)  # validates DATASET_SETTINGS and TASK
        check_logit_scale("DEAR", c.LOGIT_SCALE)
        if not 0 <= c.BETA <= 1 or not 0 < c.FUSION_CLS_INIT < 1:
            raise ConfigError("TRAINER.DEAR.BETA must be in [0, 1] and FUSION_CLS_INIT in (0, 1)")
        if not c.ATTR_TOKENS and c.K == 0:
            raise ConfigError("TRAINER.DEAR.ATTR_TOKENS False with K 0 leaves nothing to learn; keep one of them")
        self.analysis_images = None
        if c.ATTR_TOKENS and c.MASK != "none":
            if not c.ROLE_MAP:
                raise ConfigError(f"TRAINER.DEAR.ROLE_MAP is empty: {HOW_TO_MAKE.format(path='head_roles/<backbone>.json')}")
            self.analysis_images = check_source(cfg, self.manifest["weights"])  # before the data and the model load

    # ---- model -------------------------------------------------------------------------
    def build_model(self) -> None:
        cfg, c = self.cfg, self.cfg.TRAINER.DEAR
        clip = self.load_backbone()
        first, text_first = deep_layers(clip, c.J, c.TEXT_J)
        settings = DeARSettings(
            attributes=tuple(c.ATTRIBUTES), attr_tokens=c.ATTR_TOKENS, n_text=c.K,
            first_layer=first, text_first_layer=text_first, beta=c.BETA,
            rep_dim=c.REP_DIM or clip.embed_dim, rank=c.RES_LORA_DIM, attr_proj_rank=c.ATTR_PROJ_RANK,
            fusion=c.FUSION, fusion_cls_init=c.FUSION_CLS_INIT, logit_scale=c.LOGIT_SCALE,
        )
        self.report_dataset_settings()
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
        """Masks of the layers FIRST_MASKED_LAYER..last (None if that leaves none)."""
        if role_map is None:
            return None
        c = self.cfg.TRAINER.DEAR
        first = c.J + (c.FIRST_MASKED_LAYER == "J+1")
        layers = list(range(first, clip.vision_layers + 1))
        print(f"Role map {role_map.source}: {role_map.counts()} over layers {role_map.layers}; "
              f"masking layers {layers} ({c.MASK}, attribute tokens {c.ATTR_ATTENTION} to each other)")
        if not layers:
            return None
        masks = role_masks(role_map, layers, clip.vision_heads, list(c.ATTRIBUTES), 1 + clip.num_patches, c.MASK,
                           clip.dtype, c.ATTR_ATTENTION)
        return masks.to(clip.device)

    def resolve_role_map(self, clip: ClipBackbone) -> RoleMap:
        """Read TRAINER.DEAR.ROLE_MAP (a file, or the cached global / auto analysis, made on first
        use) and keep a copy, with its heatmap when there is one, beside the run's checkpoints. A
        run folder that already holds another map (a resumed run whose map changed) is refused."""
        path = role_map_file(self.cfg, clip, self.dm.dataset.train_x, self.analysis_images)
        role_map = read_role_map(path)
        check_weights(role_map, self.manifest["weights"], self.cfg.MODEL.BACKBONE.NAME)
        copy = Path(self.output_dir) / ROLE_MAP_COPY
        if copy.is_file() and path.resolve() != copy.resolve() and copy.read_bytes() != path.read_bytes():
            raise RunMismatchError(
                f"{copy} is the role map this run started with and differs from {path} (TRAINER.DEAR.ROLE_MAP "
                f"{self.cfg.TRAINER.DEAR.ROLE_MAP}); resume with TRAINER.DEAR.ROLE_MAP {copy}, or use a new --output-dir"
            )
        for src, dest in ((path.with_suffix(".png"), copy.with_suffix(".png")), (path, copy)):
            if src.is_file() and src.resolve() != dest.resolve():
                atomic_write(dest, lambda tmp, src=src: shutil.copyfile(src, tmp))
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
    def training_losses(self, images: torch.Tensor, labels: torch.Tensor,
                        share_prefix: bool = True) -> tuple[DeAROutput, dict, torch.Tensor]:
        """The step's outputs, losses and alpha. With `share_prefix`, the frozen image states below
        layer J are computed once for the prompted pass and frozen CLIP's, and the text side's below
        the text tokens once for every step (the same numbers as full passes:
        tests/test_prefix_sharing.py)."""
        c = self.cfg.TRAINER.DEAR
        with self.autocast():
            prefix = self.model.image_prefix(images) if share_prefix else None
            out = self.model.forward_train(images, prefix, share_prefix)
            frozen_image = self.model.frozen_image_features(images, prefix)
            alpha = self.model.fusion_alpha()
            losses = dear_loss(out, labels, frozen_image, self.model.frozen_text, alpha[0], c.LAMBDA_REG, c.LAMBDA_FUSION)
        return out, losses, alpha

    def forward_backward(self, batch: dict) -> dict:
        images, labels = self.parse_batch_train(batch)
        out, losses, alpha = self.training_losses(images, labels)
        self.model_backward_and_update(losses["loss"])
        summary = {k: v.item() for k, v in losses.items()}
        summary["acc"] = accuracy(out.logits, labels)
        summary["alpha_cls"] = alpha[0].item()
        return summary
