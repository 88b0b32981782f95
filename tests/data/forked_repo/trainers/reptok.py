"""An MMRL-like trainer: the repository's clip.build_model_RepTok, and a template by dataset name."""
import torch
from torch import nn
from torch.nn import functional as F

from clip import clip
from dassl.engine import TRAINER_REGISTRY, TrainerX
from dassl.optim import build_lr_scheduler, build_optimizer

from .common import CUSTOM_TEMPLATES, load_clip_to_cpu


class RepTokCLIP(nn.Module):
    def __init__(self, cfg, classnames, clip_model):
        super().__init__()
        self.clip_model = clip_model
        self.rep_tokens = clip_model.rep_tokens
        template = CUSTOM_TEMPLATES[cfg.DATASET.NAME]
        prompts = torch.cat([clip.tokenize(template.format(c.replace("_", " "))) for c in classnames])
        with torch.no_grad():
            text = clip_model.encode_text(prompts)
        self.register_buffer("text_features", text / text.norm(dim=-1, keepdim=True))

    def forward(self, image):
        image_features = self.clip_model.encode_image(image) + self.rep_tokens.mean(dim=0)
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        return self.clip_model.logit_scale.exp() * image_features @ self.text_features.t()


@TRAINER_REGISTRY.register()
class RepTok(TrainerX):
    def build_model(self):
        cfg = self.cfg
        details = {"model": "RepTok", "n_rep_tokens": cfg.TRAINER.REPTOK.N_REP_TOKENS}
        clip_model = load_clip_to_cpu(cfg, details, builder="build_model_RepTok").float()
        self.model = RepTokCLIP(cfg, self.dm.dataset.classnames, clip_model)
        for name, param in self.model.named_parameters():
            param.requires_grad_(name == "rep_tokens")
        self.optim = build_optimizer([self.model.rep_tokens], cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model("rep_tokens", self.model, self.optim, self.sched)

    def forward_backward(self, batch):
        image, label, _ = self.parse_batch_train(batch)
        loss = F.cross_entropy(self.model(image), label)
        self.model_backward_and_update(loss)
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return {"loss": loss.item()}
