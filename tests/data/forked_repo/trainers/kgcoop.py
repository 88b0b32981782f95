"""A KgCoOp-like trainer: TRAINER.COOP.CTX_INIT is a flag, the words come from a template table
looked up by dataset name, and TRAINER.COOP.W weighs a second loss term."""
from torch.nn import functional as F

from dassl.engine import TRAINER_REGISTRY, TrainerX

from .common import CUSTOM_TEMPLATES, build_prompt_learner_model, load_clip_to_cpu


@TRAINER_REGISTRY.register()
class KgCoOp(TrainerX):
    def build_model(self):
        cfg = self.cfg
        clip_model = load_clip_to_cpu(cfg).float()
        words = CUSTOM_TEMPLATES[cfg.DATASET.NAME].split(" {}")[0] if cfg.TRAINER.COOP.CTX_INIT else ""
        build_prompt_learner_model(self, clip_model, words, cfg.TRAINER.COOP.N_CTX)

    def forward_backward(self, batch):
        image, label, _ = self.parse_batch_train(batch)
        ctx = self.model.prompt_learner.ctx
        loss = F.cross_entropy(self.model(image), label) + self.cfg.TRAINER.COOP.W * 1e-3 * ctx.pow(2).mean()
        self.model_backward_and_update(loss)
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return {"loss": loss.item()}
