"""DasslCoCoOp: CoCoOp's conditional prompt learner (a meta-net shifts the context by each
image's feature) written against Dassl's and OpenAI's APIs."""
from collections import OrderedDict

import torch
import torch.nn as nn
from torch.nn import functional as F

from clip import clip
from dassl.engine import TRAINER_REGISTRY, TrainerX
from dassl.optim import build_lr_scheduler, build_optimizer

from .common import TextEncoder, load_clip_to_cpu, load_prompt_learner


class PromptLearner(nn.Module):
    def __init__(self, cfg, classnames, clip_model):
        super().__init__()
        ctx_init = cfg.TRAINER.DASSLCOCOOP.CTX_INIT.replace("_", " ")
        n_ctx = len(ctx_init.split(" ")) if ctx_init else cfg.TRAINER.DASSLCOCOOP.N_CTX
        dtype = clip_model.dtype
        ctx_dim = clip_model.ln_final.weight.shape[0]
        vis_dim = clip_model.visual.output_dim

        if ctx_init:
            with torch.no_grad():
                embedding = clip_model.token_embedding(clip.tokenize(ctx_init)).type(dtype)
            ctx_vectors = embedding[0, 1:1 + n_ctx, :]
            prompt_prefix = ctx_init
        else:
            ctx_vectors = torch.empty(n_ctx, ctx_dim, dtype=dtype)
            nn.init.normal_(ctx_vectors, std=0.02)
            prompt_prefix = " ".join(["X"] * n_ctx)
        self.ctx = nn.Parameter(ctx_vectors)
        self.meta_net = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(vis_dim, vis_dim // 16)),
            ("relu", nn.ReLU(inplace=True)),
            ("linear2", nn.Linear(vis_dim // 16, ctx_dim)),
        ]))
        if cfg.TRAINER.DASSLCOCOOP.PREC == "fp16":
            self.meta_net.half()

        prompts = [f"{prompt_prefix} {name.replace('_', ' ')}." for name in classnames]
        tokenized_prompts = torch.cat([clip.tokenize(p) for p in prompts])
        with torch.no_grad():
            embedding = clip_model.token_embedding(tokenized_prompts).type(dtype)
        self.register_buffer("token_prefix", embedding[:, :1, :])
        self.register_buffer("token_suffix", embedding[:, 1 + n_ctx:, :])
        self.n_cls, self.n_ctx = len(classnames), n_ctx
        self.tokenized_prompts = tokenized_prompts

    def forward(self, im_features):
        bias = self.meta_net(im_features).unsqueeze(1)  # (batch, 1, ctx_dim)
        ctx_shifted = self.ctx.unsqueeze(0) + bias  # (batch, n_ctx, ctx_dim)
        prompts = []
        for ctx_i in ctx_shifted:
            ctx_i = ctx_i.unsqueeze(0).expand(self.n_cls, -1, -1)
            prompts.append(torch.cat([self.token_prefix, ctx_i, self.token_suffix], dim=1))
        return torch.stack(prompts)  # (batch, n_cls, n_tokens, ctx_dim)


class CustomCLIP(nn.Module):
    def __init__(self, cfg, classnames, clip_model):
        super().__init__()
        self.prompt_learner = PromptLearner(cfg, classnames, clip_model)
        self.tokenized_prompts = self.prompt_learner.tokenized_prompts
        self.image_encoder = clip_model.visual
        self.text_encoder = TextEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale
        self.dtype = clip_model.dtype

    def forward(self, image, label=None):
        image_features = self.image_encoder(image.type(self.dtype))
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        logits = []
        for prompts_i, image_i in zip(self.prompt_learner(image_features), image_features):
            text_features = self.text_encoder(prompts_i, self.tokenized_prompts)
            text_features = text_features / text_features.norm(dim=-1, keepdim=True)
            logits.append(self.logit_scale.exp() * image_i @ text_features.t())
        logits = torch.stack(logits)
        if self.prompt_learner.training:
            return F.cross_entropy(logits, label)
        return logits


@TRAINER_REGISTRY.register()
class DasslCoCoOp(TrainerX):
    def check_cfg(self, cfg):
        assert cfg.TRAINER.DASSLCOCOOP.PREC in ["fp16", "fp32", "amp"]

    def build_model(self):
        cfg = self.cfg
        clip_model = load_clip_to_cpu(cfg)
        if cfg.TRAINER.DASSLCOCOOP.PREC in ("fp32", "amp"):
            clip_model.float()
        self.model = CustomCLIP(cfg, self.dm.dataset.classnames, clip_model)
        for name, param in self.model.named_parameters():
            if "prompt_learner" not in name:
                param.requires_grad_(False)
        self.model.to(self.device)
        self.optim = build_optimizer(self.model.prompt_learner, cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model("prompt_learner", self.model.prompt_learner, self.optim, self.sched)

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        loss = self.model(image, label)
        self.optim.zero_grad()
        loss.backward()
        self.optim.step()
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return {"loss": loss.item()}

    def parse_batch_train(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def load_model(self, directory, epoch=None):
        load_prompt_learner(self, directory, epoch)
