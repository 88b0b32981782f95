"""Progress where a user waits, in log.txt whatever the output; the line a run ends with (accuracy,
and Base / New / HM for the new-class half of a base-to-new pair); small-machine notes (workers,
a warmup as long as the run); where training curves go."""
import json
import sys
import time
import types

import pytest

from engine.data import manager
from engine.progress import Progress, progress
from engine.trainer import TrainerX
from tests.minidata import make_caltech_like
from train import main


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_progress_line_counts_and_eta_cover_the_steps_still_to_come():
    clock = Clock()
    p = Progress("epoch [2/3]", total=10, after=10, interval=0, clock=clock)
    assert p.line() == "epoch [2/3]: 0/10 batches done, 0:00:00 elapsed, eta unknown until the first batch ends"
    clock.now += 8
    p.step(4)  # 2 s a batch; 6 left in this epoch and 10 in the next
    assert p.eta() == pytest.approx(32.0)
    assert p.line() == "epoch [2/3]: 4/10 batches done, 0:00:08 elapsed, eta 0:00:32"


def test_a_step_longer_than_the_interval_still_shows_progress(capsys):
    """The timer prints while a step runs (a 100-image ViT-B/16 batch on a CPU takes minutes)."""
    items = progress(range(2), "Evaluation", interval=0.2)
    for _ in items:
        time.sleep(0.75)
    lines = capsys.readouterr().out.splitlines()
    beats = [line for line in lines if line.startswith("Evaluation: ") and " elapsed, eta " in line]
    assert len(beats) >= 4, lines  # about every 0.2 s over 1.5 s
    assert beats[0].startswith("Evaluation: 0/2 batches done") and "eta unknown until the first batch ends" in beats[0]
    assert any(line.startswith("Evaluation: 1/2 batches done") and "eta 0:00:01" in line for line in beats)
    assert lines[-1].startswith("Evaluation: 2 batches in 0:00:0")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_caltech_like(tmp_path_factory.mktemp("data"))


def argv(root, out, *extra, sub="base", opts=()):
    return ["--root", str(root), "--seed", "1", "--trainer", "CoOp",
            "--dataset-config-file", "configs/datasets/caltech101.yaml",
            "--config-file", "configs/trainers/CoOp/vit_b16_ep50.yaml", "--output-dir", str(out), *extra,
            "MODEL.BACKBONE.NAME", "tiny-test", "MODEL.BACKBONE.PRETRAINED", "False", "INPUT.SIZE", "(32, 32)",
            "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "DATALOADER.TEST.BATCH_SIZE", "3",
            "TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.PREC", "fp32", "DATASET.SUBSAMPLE_CLASSES", sub,
            "TEST.FEATURE_CACHE", "False", *opts]


def slow(method, seconds):
    def wrapped(self, *args, **kwargs):
        time.sleep(seconds)
        return method(self, *args, **kwargs)
    return wrapped


def test_training_and_evaluation_progress_reach_a_log_written_to_a_file(data_root, tmp_path, monkeypatch):
    """stdout is not a terminal here (as in a file or under SLURM); a training step and an evaluation
    batch longer than the interval still leave progress lines with an ETA in log.txt."""
    monkeypatch.setenv("PROMPTLAB_PROGRESS_SECONDS", "0.3")
    monkeypatch.setattr(TrainerX, "parse_batch_train", slow(TrainerX.parse_batch_train, 0.7))
    monkeypatch.setattr(TrainerX, "parse_batch_test", slow(TrainerX.parse_batch_test, 0.7))
    assert not sys.stdout.isatty()
    out = tmp_path / "run"
    main(argv(data_root, out, opts=("OPTIM.MAX_EPOCH", "1", "TRAIN.PRINT_FREQ", "1000")))
    log = (out / "log.txt").read_text()
    assert "epoch [1/1]: 0/3 batches done" in log and "eta unknown until the first batch ends" in log
    assert any(line.startswith("epoch [1/1]: 1/3 batches done") and " eta 0:00:0" in line for line in log.splitlines())
    assert "Evaluation: 0/3 batches done" in log and "Evaluation: 3 batches in 0:00:0" in log


def test_the_test_step_ends_with_its_accuracy_and_the_pairs_base_new_hm(data_root, tmp_path, capsys):
    base, new = tmp_path / "train_base", tmp_path / "test_new"
    main(argv(data_root, base, opts=("OPTIM.MAX_EPOCH", "1")))
    base_acc = json.loads((base / "results.json").read_text())["evaluations"]["test"]["metrics"]["accuracy"]
    assert capsys.readouterr().out.rstrip().splitlines()[-1] == \
        f"Result: Caltech101 (base classes), seed 1: accuracy {base_acc:.2f}%"
    evaluate = argv(data_root, new, "--eval-only", "--model-dir", str(base), "--load-epoch", "1", "--skip-finished",
                    sub="new")
    main(evaluate)
    new_acc = json.loads((new / "results.json").read_text())["evaluations"]["test"]["metrics"]["accuracy"]
    hm = 2 * base_acc * new_acc / (base_acc + new_acc)
    line = (f"Result: Caltech101 (new classes), seed 1: accuracy {new_acc:.2f}%; base-to-new: Base {base_acc:.2f} / "
            f"New {new_acc:.2f} / HM {hm:.2f} (Base from {base / 'results.json'})")
    assert capsys.readouterr().out.rstrip().splitlines()[-1] == line
    assert (new / "log.txt").read_text().rstrip().splitlines()[-1] == line
    main(evaluate)  # finished: skipped, and the line is printed again from its results.json
    assert capsys.readouterr().out.rstrip().splitlines()[-2:] == [
        f"The results exist at {new} (so skip this job)", line]
    other = tmp_path / "other"  # a model dir that is not a base-class training run: no pair line
    main(argv(data_root, other, "--eval-only", "--model-dir", str(base), "--load-epoch", "1",
              sub="all"))
    assert "base-to-new" not in capsys.readouterr().out.rstrip().splitlines()[-1]


def test_a_rerun_log_says_it_is_not_log_txt(data_root, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "log.txt").write_text("an earlier attempt that failed\n")
    main(argv(data_root, out, opts=("OPTIM.MAX_EPOCH", "1")))
    [log] = out.glob("log.txt-*")
    assert f"This run logs to {log} (log.txt and any other log.txt-* here are earlier runs of this folder)" in \
        capsys.readouterr().out
    assert (out / "log.txt").read_text() == "an earlier attempt that failed\n"


def test_workers_are_capped_at_the_cores_available_and_the_log_says_so(data_root, tmp_path, monkeypatch):
    monkeypatch.setattr(manager, "available_cores", lambda: 1)
    out = tmp_path / "run"
    main(argv(data_root, out, opts=("OPTIM.MAX_EPOCH", "1", "DATALOADER.NUM_WORKERS", "8")))
    log = (out / "log.txt").read_text()
    assert "Data-loader workers: 1 (DATALOADER.NUM_WORKERS 8, capped at the 1 cores available)" in log
    assert json.loads((out / "results.json").read_text())["config"]["DATALOADER"]["NUM_WORKERS"] == 8


def test_a_warmup_as_long_as_the_run_is_stated(data_root, tmp_path):
    out = tmp_path / "run"
    main(argv(data_root, out, opts=("OPTIM.MAX_EPOCH", "1")))  # the config has one constant warmup epoch at 1e-5
    assert ("Note: the warmup (OPTIM.WARMUP_EPOCH 1) is as long as the run (OPTIM.MAX_EPOCH 1): every epoch trains at "
            "the constant warmup LR 1e-05, never at OPTIM.LR 0.002") in (out / "log.txt").read_text()
    longer = tmp_path / "longer"
    main(argv(data_root, longer, opts=("OPTIM.MAX_EPOCH", "2")))
    assert "the warmup" not in (longer / "log.txt").read_text()


@pytest.mark.parametrize("installed", [True, False])
def test_the_log_says_where_training_curves_go(data_root, tmp_path, monkeypatch, installed):
    """tensorboard is optional (pip install tensorboard): faked both ways, whatever this machine has."""
    written = []

    class Writer:
        def __init__(self, log_dir):
            written.append(log_dir)

        def add_scalar(self, *args):
            written.append(args[0])

        def close(self):
            pass

    fake = types.ModuleType("torch.utils.tensorboard")
    if installed:
        fake.SummaryWriter = Writer
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    out = tmp_path / "run"
    main(argv(data_root, out, opts=("OPTIM.MAX_EPOCH", "1")))
    log = (out / "log.txt").read_text()
    if installed:
        assert f"Training curves: {out / 'tensorboard'} (view: tensorboard --logdir {out})" in log
        assert written[0] == str(out / "tensorboard") and "train/loss" in written
    else:
        assert "Training curves: not written (tensorboard is not installed: pip install tensorboard)" in log
