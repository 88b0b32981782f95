"""A ProGrad-like trainer: its update step is a method that only its repository's Dassl fork has."""
from torch.nn import functional as F

from dassl.engine import TRAINER_REGISTRY, TrainerX

from .common import build_prompt_learner_model, load_clip_to_cpu


@TRAINER_REGISTRY.register()
class GradFork(TrainerX):
    def build_model(self):
        build_prompt_learner_model(self, load_clip_to_cpu(self.cfg).float(), "a photo of a", 4)

    def forward_backward(self, batch):
        image, label, _ = self.parse_batch_train(batch)
        loss = F.cross_entropy(self.model(image), label)
        self.gradfork_backward_and_update(loss, loss.detach(), 1.0)
        return {"loss": loss.item()}
