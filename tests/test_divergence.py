"""A run whose loss or learnable weights go non-finite stops with one error naming the epoch and
batch, exits non-zero, writes no results.json and leaves the last good checkpoint the newest;
amp's skipped steps (overflowing gradients, finite loss and weights) are not divergence."""
import json
from pathlib import Path

import pytest
import torch

from engine.cli import run_cli
from engine.trainer import TrainerX
from tests.minidata import make_caltech_like
from train import main


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_caltech_like(tmp_path_factory.mktemp("data"))


def argv(root, out, *opts, epochs=2):
    return ["--root", str(root), "--seed", "1", "--trainer", "CoOp",
            "--dataset-config-file", "configs/datasets/caltech101.yaml",
            "--config-file", "configs/trainers/CoOp/vit_b16_ep50.yaml", "--output-dir", str(out),
            "MODEL.BACKBONE.NAME", "tiny-test", "MODEL.BACKBONE.PRETRAINED", "False", "INPUT.SIZE", "(32, 32)",
            "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "DATALOADER.TEST.BATCH_SIZE", "8",
            "OPTIM.MAX_EPOCH", str(epochs), "TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.PREC", "fp32", *opts]


# One epoch of warmup at a constant 1e-5, then SGD at 1e38: epoch 2 blows the context vectors up.
DIVERGING = ("OPTIM.NAME", "sgd", "OPTIM.LR", "1e38", "OPTIM.WARMUP_EPOCH", "1", "OPTIM.WARMUP_TYPE", "constant",
             "OPTIM.WARMUP_CONS_LR", "1e-5")


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_diverging_run_stops_with_one_error_and_no_results(data_root, tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        run_cli(main, argv(data_root, out, *DIVERGING))
    err = capsys.readouterr().err
    assert e.value.code == 1 and "Traceback" not in err
    assert err.startswith("error: Training diverged at epoch 2/2, batch ")
    assert (f"The run stops here without results.json; the newest checkpoint is epoch 1's, the last with finite "
            f"weights (in {out})") in err and "OPTIM.LR, now 1e+38" in err and "--start-over" in err
    assert not (out / "results.json").exists()
    assert files(out / "prompt_learner") == ["checkpoint", "model.pth.tar-1", "model.pth.tar-1.sha256"]
    assert torch.isfinite(torch.load(out / "prompt_learner" / "model.pth.tar-1", weights_only=True)
                          ["state_dict"]["ctx"]).all()
    assert "error: Training diverged at epoch 2/2" in (out / "log.txt").read_text()


def test_non_finite_weights_after_a_finite_loss_stop_the_run(data_root, tmp_path, monkeypatch):
    """A step can leave NaN weights behind a finite loss; the check names the parameter."""
    real = TrainerX.model_backward_and_update

    def poisoning(self, loss, names=None):
        real(self, loss, names)
        if self.epoch == 0 and self.batch_idx == 2:
            with torch.no_grad():
                self._models["prompt_learner"].ctx[0, 0] = float("nan")

    monkeypatch.setattr(TrainerX, "model_backward_and_update", poisoning)
    out = tmp_path / "run"
    with pytest.raises(Exception, match=r"Training diverged at epoch 1/2, batch 3/5: prompt_learner\.ctx non-finite"):
        main(argv(data_root, out))
    assert not (out / "results.json").exists() and not (out / "prompt_learner").exists()


def test_steps_the_grad_scaler_skips_are_not_divergence(data_root, tmp_path, monkeypatch):
    """amp's GradScaler (CUDA in real runs; its CPU twin here) skips a step whose gradients
    overflowed and lowers its scale: loss and weights stay finite and the run finishes."""
    scales = []
    real_build = TrainerX.before_train

    def with_scaler(self):
        real_build(self)
        self.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16, enabled=True)
        ctx = self._models["prompt_learner"].ctx
        ctx.register_hook(lambda g: torch.full_like(g, float("inf")) if self.batch_idx == 1 else g)

    real_step = TrainerX.model_backward_and_update

    def recording(self, loss, names=None):
        before = self._models["prompt_learner"].ctx.detach().clone()
        real_step(self, loss, names)
        scales.append(self.scaler.get_scale())
        if self.batch_idx == 1:
            assert torch.equal(before, self._models["prompt_learner"].ctx)  # the step was skipped

    monkeypatch.setattr(TrainerX, "before_train", with_scaler)
    monkeypatch.setattr(TrainerX, "model_backward_and_update", recording)
    out = tmp_path / "run"
    main(argv(data_root, out, epochs=1))
    assert scales[:2] == [2.0 ** 16, 2.0 ** 15]  # batch 2 overflowed: skipped, scale halved
    assert json.loads((out / "results.json").read_text())["evaluations"]["test"]["metrics"]["accuracy"] >= 0
