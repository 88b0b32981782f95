"""DasslCLIPAdapter: CLIP-Adapter's residual adapter on the image feature, written against
Dassl's and OpenAI's APIs for a CUDA machine (`.cuda()`, `.half()`), as such files are."""
import torch
import torch.nn as nn
from torch.nn import functional as F

from clip import clip
from dassl.engine import TRAINER_REGISTRY, TrainerX
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer

from .common import load_clip_to_cpu


class Adapter(nn.Module):
    def __init__(self, c_in, reduction=4):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(c_in, c_in // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(c_in // reduction, c_in, bias=False),
            nn.ReLU(inplace=True),
        )

    def forward(self, x):
        return self.fc(x)


class CustomCLIP(nn.Module):
    def __init__(self, cfg, classnames, clip_model):
        super().__init__()
        c = cfg.TRAINER.DASSLADAPTER
        self.image_encoder = clip_model.visual
        self.logit_scale = clip_model.logit_scale
        self.dtype = clip_model.dtype
        self.ratio = c.RATIO
        self.adapter = Adapter(clip_model.visual.output_dim, c.REDUCTION)
        if c.PREC == "fp16":
            self.adapter.half()
        prompts = clip.tokenize([f"a photo of a {name.replace('_', ' ')}." for name in classnames]).cuda()
        with torch.no_grad():
            text_features = clip_model.cuda().encode_text(prompts)
        self.register_buffer("text_features", text_features / text_features.norm(dim=-1, keepdim=True))

    def forward(self, image):
        image_features = self.image_encoder(image.type(self.dtype))
        adapted = self.adapter(image_features)
        image_features = self.ratio * adapted + (1 - self.ratio) * image_features
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        return self.logit_scale.exp() * image_features @ self.text_features.t()


@TRAINER_REGISTRY.register()
class DasslCLIPAdapter(TrainerX):
    def build_model(self):
        cfg = self.cfg
        clip_model = load_clip_to_cpu(cfg)
        if cfg.TRAINER.DASSLADAPTER.PREC == "fp32":
            clip_model.float()
        self.model = CustomCLIP(cfg, self.dm.dataset.classnames, clip_model)
        for name, param in self.model.named_parameters():
            if "adapter" not in name:
                param.requires_grad_(False)
        self.model.cuda()
        self.optim = build_optimizer(self.model.adapter, cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model("clip_adapter", self.model.adapter, self.optim, self.sched)

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        output = self.model(image)
        loss = F.cross_entropy(output, label)
        self.model_backward_and_update(loss)
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return {"loss": loss.item(), "acc": compute_accuracy(output, label)[0].item()}

    def parse_batch_train(self, batch):
        return batch["img"].cuda(), batch["label"].cuda()
