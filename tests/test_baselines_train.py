"""train.py end to end for CoCoOp, IVLP, MaPLe and PromptSRC on the generated mini dataset
with the 2-layer tiny-test CLIP: learnable-only checkpoints, eval-only reproduction, amp,
PromptSRC's GPA through a resume; and every shipped config merges."""
import json
from pathlib import Path

import pytest
import torch

from backbone import load_clip
from engine.config import get_cfg, merge_file
from engine.registry import TRAINER_REGISTRY
from engine.trainer import TrainerX
from tests.minidata import make_caltech_like
from train import main
from trainers.cocoop import CoCoOpPrompts
from trainers.deep_prompts import count_learnable
from trainers.ivlp import independent_prompts
from trainers.maple import MultiModalPrompts
from trainers.promptsrc import PromptSRC, gpa_weights

METHODS = {
    "CoCoOp": ("vit_b16_c4_ep10_batch1_ctxv1", ["TRAINER.COCOOP.PREC"], {"text.ctx", "meta_net.linear1.weight",
               "meta_net.linear1.bias", "meta_net.linear2.weight", "meta_net.linear2.bias"}),
    "IVLP": ("vit_b16_c2_ep5_batch4_2+2ctx", ["TRAINER.IVLP.PREC", "TRAINER.IVLP.PROMPT_DEPTH_TEXT", "2",
             "TRAINER.IVLP.PROMPT_DEPTH_VISION", "2"], {"text.ctx", "text_prompts.0", "vision_prompts.0", "vision_prompts.1"}),
    "MaPLe": ("vit_b16_c2_ep5_batch4_2ctx", ["TRAINER.MAPLE.PREC", "TRAINER.MAPLE.PROMPT_DEPTH", "2"],
              {"text.ctx", "proj.weight", "proj.bias", "text_prompts.0", "deep_proj.0.weight", "deep_proj.0.bias"}),
    "PromptSRC": ("vit_b16_c2_ep20_batch4_4+4ctx", ["TRAINER.PROMPTSRC.PREC", "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "2",
                  "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "2", "TRAINER.PROMPTSRC.GPA_MEAN", "2"],
                  {"text.ctx", "text_prompts.0", "vision_prompts.0", "vision_prompts.1"}),
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_caltech_like(tmp_path_factory.mktemp("data"))


def argv(root, out, trainer, *extra, epochs=1, prec="fp32"):
    cfg, opts, _ = METHODS[trainer]
    prec_key, *rest = opts
    return [
        "--root", str(root), "--seed", "1", "--trainer", trainer,
        "--dataset-config-file", "configs/datasets/caltech101.yaml",
        "--config-file", f"configs/trainers/{trainer}/{cfg}.yaml", "--output-dir", str(out), *extra,
        "MODEL.BACKBONE.NAME", "tiny-test", "MODEL.BACKBONE.PRETRAINED", "False",
        "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0",
        "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "DATALOADER.TEST.BATCH_SIZE", "8",
        "OPTIM.MAX_EPOCH", str(epochs), prec_key, prec, *rest,
    ]


def state_of(out, epoch):
    return torch.load(Path(out) / "prompt_learner" / f"model.pth.tar-{epoch}", weights_only=False)["state_dict"]


def accuracy_of(out):
    return json.loads((Path(out) / "results.json").read_text())["evaluations"]["test"]["metrics"]["accuracy"]


@pytest.mark.parametrize("trainer,prec", [("CoCoOp", "fp32"), ("IVLP", "amp"), ("MaPLe", "amp"), ("PromptSRC", "fp32")])
def test_train_saves_learnable_tensors_only_and_eval_only_reproduces(data_root, tmp_path, trainer, prec):
    out = tmp_path / "run"
    main(argv(data_root, out, trainer, prec=prec))
    state = state_of(out, 1)
    assert set(state) == METHODS[trainer][2] and all(torch.isfinite(v).all() for v in state.values())
    evaluated = tmp_path / "eval"
    main(argv(data_root, evaluated, trainer, "--eval-only", "--model-dir", str(out), "--load-epoch", "1", prec=prec))
    assert accuracy_of(evaluated) == accuracy_of(out)


def test_promptsrc_gpa_survives_a_resume_and_lands_in_the_last_checkpoint(data_root, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    states = []
    gpa_after_epoch = PromptSRC.after_epoch

    def record(self):  # each epoch's prompts, before GPA touches them
        states.append({k: v.clone() for k, v in self.model.prompt_learner.state_dict().items()})
        gpa_after_epoch(self)

    monkeypatch.setattr(PromptSRC, "after_epoch", record)
    main(argv(data_root, straight, "PromptSRC", epochs=3))
    monkeypatch.undo()
    original = TrainerX.after_epoch
    weights = gpa_weights(3, 2, 1)
    final = state_of(straight, 3)
    for k, v in final.items():  # the last checkpoint holds the aggregate of the three epochs
        assert torch.allclose(v, sum(w * s[k] for w, s in zip(weights, states)), atol=1e-6), k
    log = (straight / "log.txt").read_text()
    assert "Using the GPA (Gaussian-aggregated) prompts" in log and " kl " in log and " text " in log

    interrupted = tmp_path / "interrupted"

    def crash_after_second_epoch(self):
        original(self)
        if self.epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(TrainerX, "after_epoch", crash_after_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        main(argv(data_root, interrupted, "PromptSRC", epochs=3))
    monkeypatch.setattr(TrainerX, "after_epoch", original)
    assert sorted(p.name for p in (interrupted / "prompt_learner").glob("gpa*")) == [
        "gpa.pth.tar-1", "gpa.pth.tar-1.sha256", "gpa.pth.tar-2", "gpa.pth.tar-2.sha256"]
    main(argv(data_root, interrupted, "PromptSRC", epochs=3))
    resumed = state_of(interrupted, 3)
    assert all(torch.equal(resumed[k], final[k]) for k in final)


CONFIGS = sorted(p for m in METHODS for p in Path("configs/trainers", m).glob("*.yaml"))


@pytest.fixture(scope="module")
def tiny_attr():
    return load_clip("tiny-attr", pretrained=False)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_config_merges_and_tiny_configs_fit_tiny_attr(path, tiny_attr):
    cfg = get_cfg()
    merge_file(cfg, str(path))
    trainer = TRAINER_REGISTRY.get(path.parent.name)
    node = cfg.TRAINER[trainer.CONFIG_NODE]
    assert node.PREC in ("fp16", "fp32") and cfg.OPTIM.MAX_EPOCH >= 1
    if path.stem.startswith("tiny_"):
        assert cfg.MODEL.BACKBONE.NAME == "tiny-attr" and tuple(cfg.INPUT.SIZE) == (tiny_attr.image_size,) * 2
        learner = {
            "CoCoOp": lambda: CoCoOpPrompts(tiny_attr, ["a", "b"], node.N_CTX, node.CTX_INIT),
            "MaPLe": lambda: MultiModalPrompts(tiny_attr, ["a", "b"], node.N_CTX, node.CTX_INIT, node.PROMPT_DEPTH),
        }.get(path.parent.name, lambda: independent_prompts(tiny_attr, ["a", "b"], node))()
        assert count_learnable(learner) > 0
