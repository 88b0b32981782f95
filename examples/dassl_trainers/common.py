"""Helpers the example trainers share, as CoOp-family repositories share load_clip_to_cpu and
TextEncoder: only dassl, clip and torch are used."""
import os.path as osp

import torch
import torch.nn as nn

from clip import clip
from dassl.utils import load_checkpoint


def load_clip_to_cpu(cfg):
    """OpenAI's weights for MODEL.BACKBONE.NAME: a TorchScript archive or a plain state dict."""
    model_path = clip._download(clip._MODELS[cfg.MODEL.BACKBONE.NAME])
    try:
        model = torch.jit.load(model_path, map_location="cpu").eval()
        state_dict = None
    except RuntimeError:
        state_dict = torch.load(model_path, map_location="cpu")
    return clip.build_model(state_dict or model.state_dict())


class TextEncoder(nn.Module):
    """CLIP's text tower on prompt embeddings [n, L, width]; pooled at the end-of-text token."""

    def __init__(self, clip_model):
        super().__init__()
        self.transformer = clip_model.transformer
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.dtype = clip_model.dtype

    def forward(self, prompts, tokenized_prompts):
        x = prompts + self.positional_embedding.type(self.dtype)
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)  # sequence-first inside
        x = self.ln_final(x).type(self.dtype)
        eot = tokenized_prompts.argmax(dim=-1)
        return x[torch.arange(x.shape[0]), eot] @ self.text_projection


def load_prompt_learner(trainer, directory, epoch):
    """Dassl-style load_model for prompt learners: the fixed token embeddings are skipped."""
    if not directory:
        print("Note that load_model() is skipped as no pretrained model is given")
        return
    model_file = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
    for name in trainer.get_model_names():
        model_path = osp.join(directory, name, model_file)
        if not osp.exists(model_path):
            raise FileNotFoundError(f'Model not found at "{model_path}"')
        checkpoint = load_checkpoint(model_path)
        state_dict = checkpoint["state_dict"]
        for fixed in ("token_prefix", "token_suffix"):
            state_dict.pop(fixed, None)
        print(f'Loading weights to {name} from "{model_path}" (epoch = {checkpoint["epoch"]})')
        trainer._models[name].load_state_dict(state_dict, strict=False)
