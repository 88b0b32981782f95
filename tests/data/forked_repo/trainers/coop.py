"""CoOp on the repository's own clip: its build_model takes design details."""
from torch.nn import functional as F

from dassl.engine import TRAINER_REGISTRY, TrainerX
from dassl.metrics import compute_accuracy

from .common import build_prompt_learner_model, load_clip_to_cpu


def design_details(cfg):
    return {"trainer": "CoOp", "vision_depth": 0, "language_depth": 0, "vision_ctx": 0, "language_ctx": 0}


@TRAINER_REGISTRY.register()
class CoOp(TrainerX):
    def build_model(self):
        cfg = self.cfg
        clip_model = load_clip_to_cpu(cfg, design_details(cfg))
        if cfg.TRAINER.COOP.PREC in ("fp32", "amp"):
            clip_model.float()
        build_prompt_learner_model(self, clip_model, cfg.TRAINER.COOP.CTX_INIT, cfg.TRAINER.COOP.N_CTX)

    def forward_backward(self, batch):
        image, label, _ = self.parse_batch_train(batch)
        output = self.model(image)
        loss = F.cross_entropy(output, label)
        self.model_backward_and_update(loss)
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return {"loss": loss.item(), "acc": compute_accuracy(output, label)[0].item()}
