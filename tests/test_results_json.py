"""results.json means "finished": evaluations during training (best_val's per-epoch val) never
write it, so run_job's skip rule cannot mistake a killed training run for a finished one."""
import json

import pytest
import torch

from engine.trainer import TrainerX
from tests.minidata import make_caltech_like
from train import main


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_caltech_like(tmp_path_factory.mktemp("data"))


def argv(root, out, *opts, epochs=2):
    return [
        "--root", str(root), "--seed", "1", "--trainer", "CoOp",
        "--dataset-config-file", "configs/datasets/caltech101.yaml",
        "--config-file", "configs/trainers/CoOp/vit_b16_ep50.yaml", "--output-dir", str(out),
        "MODEL.BACKBONE.NAME", "tiny-test", "MODEL.BACKBONE.PRETRAINED", "False",
        "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0",
        "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "DATALOADER.TEST.BATCH_SIZE", "8",
        "OPTIM.MAX_EPOCH", str(epochs), "TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.PREC", "fp32", *opts,
    ]


def test_best_val_run_killed_mid_training_has_no_results_then_resumes(data_root, tmp_path, monkeypatch):
    out = tmp_path / "run"
    seen = []
    real_after_epoch, real_run_epoch = TrainerX.after_epoch, TrainerX.run_epoch

    def after_epoch(self):
        real_after_epoch(self)  # evaluates val (best_val) and saves the checkpoint
        seen.append((out / "results.json").exists())

    def killed_in_second_epoch(self):
        if self.epoch == 1:
            raise KeyboardInterrupt
        real_run_epoch(self)

    monkeypatch.setattr(TrainerX, "after_epoch", after_epoch)
    monkeypatch.setattr(TrainerX, "run_epoch", killed_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        main(argv(data_root, out, "TEST.FINAL_MODEL", "best_val"))
    assert seen == [False] and not (out / "results.json").exists()
    assert "Evaluate on the *val* set" in (out / "log.txt").read_text()

    first_val = torch.load(out / "prompt_learner" / "model-best.pth.tar", weights_only=False)["val_result"]

    monkeypatch.setattr(TrainerX, "run_epoch", real_run_epoch)
    best_at_resume = []
    monkeypatch.setattr(TrainerX, "before_epoch", lambda self: best_at_resume.append(self.best_result))
    main(argv(data_root, out, "TEST.FINAL_MODEL", "best_val"))
    assert best_at_resume == [first_val]  # the resumed run compares against epoch 1's val, not -inf
    assert seen == [False, False]
    results = json.loads((out / "results.json").read_text())
    assert set(results["evaluations"]) == {"val", "test"} and results["evaluations"]["val"]["epoch"] == 2
    assert not list(out.glob("results.json-*"))  # nothing was there to move aside
    assert "Previous epoch: 1" in next(out.glob("log.txt-*")).read_text()


def test_no_test_run_still_marks_itself_finished(data_root, tmp_path):
    out = tmp_path / "run"
    main(argv(data_root, out, "TEST.NO_TEST", "True", epochs=1))
    results = json.loads((out / "results.json").read_text())
    assert results["evaluations"] == {} and results["config"]["OPTIM"]["MAX_EPOCH"] == 1
