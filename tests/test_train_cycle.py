"""train.py end to end on a generated CoOp-layout dataset with a 2-layer CLIP."""
import json
from pathlib import Path

import pytest
import torch

from engine.trainer import TrainerX
from tests.minidata import CLASSES, COUNTS, make_caltech_like
from train import main

N_CTX = 4


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_caltech_like(tmp_path_factory.mktemp("data"))


def argv(root, out, *extra, trainer="CoOp", epochs=2, seed=1):
    return [
        "--root", str(root), "--seed", str(seed), "--trainer", trainer,
        "--dataset-config-file", "configs/datasets/caltech101.yaml",
        "--config-file", "configs/trainers/CoOp/vit_b16_ep50.yaml",
        "--output-dir", str(out), *extra,
        "MODEL.BACKBONE.NAME", "tiny-test", "MODEL.BACKBONE.PRETRAINED", "False",
        "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0",
        "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "DATALOADER.TEST.BATCH_SIZE", "8",
        "OPTIM.MAX_EPOCH", str(epochs), "TRAINER.COOP.N_CTX", str(N_CTX), "TRAINER.COOP.PREC", "fp32",
    ]


def ctx_of(out, epoch):
    return torch.load(Path(out) / "prompt_learner" / f"model.pth.tar-{epoch}", weights_only=False)["state_dict"]["ctx"]


def test_train_checkpoint_eval_only(data_root, tmp_path):
    out = tmp_path / "run"
    main(argv(data_root, out))
    log = (out / "log.txt").read_text()
    n_batches = COUNTS["train"] * len(CLASSES) // 4
    assert f"epoch [1/2] batch [{n_batches}/{n_batches}]" in log and " lr 1.0000e-05 eta " in log
    assert "Finish training" in log and "=> result" in log
    results = json.loads((out / "results.json").read_text())
    acc = results["evaluations"]["test"]["metrics"]["accuracy"]
    assert f"* accuracy: {acc:.1f}%" in log
    assert results["trainer"] == "CoOp" and results["dataset"] == "Caltech101" and results["seed"] == 1
    assert results["evaluations"]["test"]["epoch"] == 2 and results["config"]["OPTIM"]["MAX_EPOCH"] == 2
    assert "torch" in results["environment"]

    ckpt_dir = out / "prompt_learner"
    assert sorted(p.name for p in ckpt_dir.iterdir()) == [
        "checkpoint", "model.pth.tar-1", "model.pth.tar-1.sha256", "model.pth.tar-2", "model.pth.tar-2.sha256"]
    ckpt = torch.load(ckpt_dir / "model.pth.tar-2", weights_only=False)
    assert list(ckpt["state_dict"]) == ["ctx"]  # learnable tensors only, no CLIP weights
    assert ckpt["state_dict"]["ctx"].shape == (N_CTX, 48) and ckpt["epoch"] == 2
    assert (ckpt_dir / "model.pth.tar-2").stat().st_size < 50_000

    evaluated = tmp_path / "eval"
    main(argv(data_root, evaluated, "--eval-only", "--model-dir", str(out), "--load-epoch", "2"))
    again = json.loads((evaluated / "results.json").read_text())
    assert again["evaluations"]["test"]["metrics"] == results["evaluations"]["test"]["metrics"]
    assert 'Loading weights to prompt_learner from' in (evaluated / "log.txt").read_text()


def test_interrupted_run_resumes_to_the_same_weights(data_root, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    main(argv(data_root, straight, epochs=3))

    interrupted = tmp_path / "interrupted"
    original = TrainerX.after_epoch

    def crash_after_second_epoch(self):
        original(self)
        if self.epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(TrainerX, "after_epoch", crash_after_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        main(argv(data_root, interrupted, epochs=3))
    monkeypatch.setattr(TrainerX, "after_epoch", original)
    first_log = (interrupted / "log.txt").read_text()
    assert "Finish training" not in first_log

    main(argv(data_root, interrupted, epochs=3))
    logs = sorted(p.name for p in interrupted.iterdir() if p.name.startswith("log.txt"))
    assert len(logs) == 2 and (interrupted / "log.txt").read_text() == first_log  # earlier log kept
    resumed_log = (interrupted / logs[1]).read_text()
    assert "Previous epoch: 2" in resumed_log and "epoch [1/3]" not in resumed_log
    assert torch.equal(ctx_of(straight, 3), ctx_of(interrupted, 3))


def test_explicit_resume_dir_of_finished_run_only_tests(data_root, tmp_path):
    first = tmp_path / "first"
    main(argv(data_root, first, epochs=1))
    second = tmp_path / "second"
    main(argv(data_root, second, "--resume", str(first), epochs=1))
    log = (second / "log.txt").read_text()
    assert "Previous epoch: 1" in log and "epoch [1/1]" not in log and "Finish training" in log


def test_eval_only_without_model_dir_is_a_clear_error(data_root, tmp_path):
    with pytest.raises(ValueError, match="--eval-only needs --model-dir"):
        main(argv(data_root, tmp_path / "x", "--eval-only"))


def test_missing_epoch_lists_available_checkpoints(data_root, tmp_path):
    out = tmp_path / "run"
    main(argv(data_root, out, epochs=1))
    with pytest.raises(FileNotFoundError, match=r"model.pth.tar-7.*model.pth.tar-1"):
        main(argv(data_root, tmp_path / "e", "--eval-only", "--model-dir", str(out), "--load-epoch", "7"))


def test_zeroshot_clip_eval_only_and_seed_zero(data_root, tmp_path):
    out = tmp_path / "zs"
    main(argv(data_root, out, "--eval-only", trainer="ZeroshotCLIP", seed=0))
    results = json.loads((out / "results.json").read_text())
    assert results["trainer"] == "ZeroshotCLIP" and results["seed"] == 0
    assert results["evaluations"]["test"]["metrics"]["accuracy"] >= 0
    assert "Setting fixed seed: 0" in (out / "log.txt").read_text()


def test_rerun_keeps_earlier_results(data_root, tmp_path):
    out = tmp_path / "zs"
    main(argv(data_root, out, "--eval-only", trainer="ZeroshotCLIP"))
    main(argv(data_root, out, "--eval-only", trainer="ZeroshotCLIP"))
    assert len(list(out.glob("results.json-*"))) == 1 and (out / "results.json").is_file()


def test_best_val_model_is_saved_and_deployed(data_root, tmp_path):
    out = tmp_path / "best"
    main(argv(data_root, out, "TEST.FINAL_MODEL", "best_val", "TEST.PER_CLASS_RESULT", "True", epochs=2))
    assert (out / "prompt_learner" / "model-best.pth.tar").is_file()
    log = (out / "log.txt").read_text()
    assert log.count("Evaluate on the *val* set") == 2 and "Deploy the model with the best val performance" in log
    assert f"* class: 0 ({CLASSES[0]})" in log and "* average: " in log
    results = json.loads((out / "results.json").read_text())
    assert set(results["evaluations"]) == {"val", "test"}
    assert "perclass_accuracy" in results["evaluations"]["test"]["metrics"]
