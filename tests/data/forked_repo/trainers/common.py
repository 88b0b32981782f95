import torch
from torch import nn

from clip import clip

CUSTOM_TEMPLATES = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "Caltech101": "a photo of a {}.",
    "ImageNet": "a photo of a {}.",
}


def load_clip_to_cpu(cfg, design_details=None, builder="build_model"):
    path = clip._download(clip._MODELS[cfg.MODEL.BACKBONE.NAME])
    try:
        model = torch.jit.load(path, map_location="cpu").eval()
        state_dict = None
    except RuntimeError:
        state_dict = torch.load(path, map_location="cpu")
    return getattr(clip, builder)(state_dict or model.state_dict(), design_details)


class TextEncoder(nn.Module):
    def __init__(self, clip_model):
        super().__init__()
        self.transformer = clip_model.transformer
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.dtype = clip_model.dtype

    def forward(self, prompts, tokenized_prompts):
        x = prompts + self.positional_embedding.type(self.dtype)
        x = self.ln_final(self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)).type(self.dtype)
        return x[torch.arange(x.shape[0]), tokenized_prompts.argmax(dim=-1)] @ self.text_projection


class PromptLearner(nn.Module):
    """A generic context before the class name; `words` initialise it, else N_CTX random vectors."""

    def __init__(self, words, n_ctx, classnames, clip_model):
        super().__init__()
        dtype = clip_model.dtype
        if words:
            n_ctx = len(words.split(" "))
            with torch.no_grad():
                ctx = clip_model.token_embedding(clip.tokenize(words)).type(dtype)[0, 1:1 + n_ctx]
        else:
            ctx = torch.empty(n_ctx, clip_model.ln_final.weight.shape[0], dtype=dtype)
            nn.init.normal_(ctx, std=0.02)
            words = " ".join(["X"] * n_ctx)
        self.ctx = nn.Parameter(ctx)
        names = [name.replace("_", " ") for name in classnames]
        self.tokenized_prompts = torch.cat([clip.tokenize(f"{words} {name}.") for name in names])
        with torch.no_grad():
            embedding = clip_model.token_embedding(self.tokenized_prompts).type(dtype)
        self.register_buffer("token_prefix", embedding[:, :1, :])
        self.register_buffer("token_suffix", embedding[:, 1 + n_ctx:, :])

    def forward(self):
        ctx = self.ctx.unsqueeze(0).expand(self.token_prefix.shape[0], -1, -1)
        return torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)


class CustomCLIP(nn.Module):
    def __init__(self, prompt_learner, clip_model):
        super().__init__()
        self.prompt_learner = prompt_learner
        self.image_encoder = clip_model.visual
        self.text_encoder = TextEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale
        self.dtype = clip_model.dtype

    def forward(self, image):
        image_features = self.image_encoder(image.type(self.dtype))
        text_features = self.text_encoder(self.prompt_learner(), self.prompt_learner.tokenized_prompts)
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        text_features = text_features / text_features.norm(dim=-1, keepdim=True)
        return self.logit_scale.exp() * image_features @ text_features.t()


def build_prompt_learner_model(trainer, clip_model, words, n_ctx):
    """self.model, its prompt learner the only registered (trained) module, as CoOp-family files do."""
    from dassl.optim import build_lr_scheduler, build_optimizer

    learner = PromptLearner(words, n_ctx, trainer.dm.dataset.classnames, clip_model)
    trainer.model = CustomCLIP(learner, clip_model)
    for name, param in trainer.model.named_parameters():
        param.requires_grad_("prompt_learner" in name)
    trainer.model.to(trainer.device)
    trainer.optim = build_optimizer(trainer.model.prompt_learner, trainer.cfg.OPTIM)
    trainer.sched = build_lr_scheduler(trainer.optim, trainer.cfg.OPTIM)
    trainer.register_model("prompt_learner", trainer.model.prompt_learner, trainer.optim, trainer.sched)
