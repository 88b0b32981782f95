"""A ProGrad-like trainer: its update step is a method that only its repository's Dassl fork has."""
from torch.nn import functional as F

from dassl.engine import TRAINER_REGISTRY, TrainerX

from .common import build_prompt_learner_model, load_clip_to_cpu


@TRAINER_REGISTRY.register()
class ProGrad(TrainerX):
    def build_model(self):
        build_prompt_learner_model(self, load_clip_to_cpu(self.cfg).float(), "a photo of a", 4)

    def forward_backward(self, batch):
        image, label, _ = self.parse_batch_train(batch)
        xe_loss = F.cross_entropy(self.model(image), label)
        prior_loss = self.model.prompt_learner.ctx.pow(2).mean()
        self.prograd_backward_and_update(xe_loss, prior_loss, 1.0)
        return {"loss": xe_loss.item()}
