"""torchrun --nproc-per-node 2 train.py on CPU (gloo) is the 1-process run with the same global
batch: the same per-step losses, final learnable weights and test metrics, to fp32 precision,
for CoOp and DeAR on tiny-attr with random crops and flips; only rank 0 writes the run folder.
The batches themselves: the ranks' shards of each global batch are exactly the 1-process batch."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.checkpoint import epoch_checkpoints
from engine.data.samplers import EpochBatchSampler, ShardSampler
from engine.errors import ConfigError
from engine.utils import MetricMeter
from train import main

REPO = Path(__file__).resolve().parents[1]
AUGMENT = ["INPUT.TRANSFORMS", "['random_resized_crop', 'random_flip', 'normalize']"]
RUNS = {  # trainer: (config, model folder, extra options); 4 and 8 steps of 32 and 4 images
    "CoOp": ("tiny_ep10", "prompt_learner", ["DATASET.NUM_SHOTS", "2", "OPTIM.MAX_EPOCH", "2"]),
    "DeAR": ("tiny_ep10_batch4", "dear", ["DATASET.NUM_SHOTS", "1", "OPTIM.MAX_EPOCH", "1"]),
}


@pytest.mark.parametrize("size,batch,drop_last,world", [(10, 4, True, 2), (10, 4, False, 3), (7, 8, False, 2),
                                                          (32, 32, True, 4)])
def test_the_ranks_shards_are_the_single_process_batch(size, batch, drop_last, world):
    for epoch in (0, 3):
        single = EpochBatchSampler(size, batch, drop_last, shuffle=True, seed=5)
        single.set_epoch(epoch)
        ranks = [EpochBatchSampler(size, batch, drop_last, shuffle=True, seed=5, rank=r, world=world)
                 for r in range(world)]
        for r in ranks:
            r.set_epoch(epoch)
        expected = list(single)
        assert all(len(r) == len(single) for r in ranks)
        assert [sum(shards, []) for shards in zip(*ranks)] == expected  # indices and augmentation seeds
        assert max(len(shard) for shards in zip(*ranks) for shard in shards) <= -(-batch // world)
    epochs = [[i for b in s for i, _ in b] for s in (single, ranks[0])]
    single.set_epoch(1)
    assert [i for b in single for i, _ in b] != epochs[0]  # a new order every epoch
    assert sorted(i for part in (ShardSampler(size, r, world) for r in range(world)) for i in part) == list(range(size))


def test_more_processes_than_a_batch_holds_is_refused():
    with pytest.raises(ConfigError, match=r"a batch holds 4 images .*BATCH_SIZE 4.*Use at most 4 processes"):
        EpochBatchSampler(100, 4, True, True, seed=1, rank=0, world=8)


@pytest.fixture(scope="module")
def data(attr_color_shape_root):
    return attr_color_shape_root


def train_args(data: Path, out: Path, trainer: str) -> list[str]:
    config, _, extra = RUNS[trainer]
    return ["--root", str(data), "--seed", "1", "--trainer", trainer, "--output-dir", str(out),
            "--dataset-config-file", "configs/datasets/attr_color_shape.yaml",
            "--config-file", f"configs/trainers/{trainer}/{config}.yaml",
            "DATASET.SUBSAMPLE_CLASSES", "base", "DATALOADER.NUM_WORKERS", "0", *AUGMENT, *extra]


def final_weights(out: Path, trainer: str) -> dict[str, torch.Tensor]:
    folder = out / RUNS[trainer][1]
    last = max(epoch_checkpoints(folder).items())[1]
    return torch.load(last, weights_only=True)["state_dict"]


def test_metric_record_is_what_is_logged(monkeypatch):
    """The recorder tests/ddp_driver.py installs sees the values the log prints."""
    from tests import ddp_driver

    meter = MetricMeter()
    monkeypatch.setattr(ddp_driver, "RECORD", [])
    ddp_driver.recording_update(meter, {"loss": torch.tensor(0.25), "acc": 50.0})
    assert ddp_driver.RECORD == [{"loss": 0.25, "acc": 50.0}] and str(meter) == "loss 0.2500 (0.2500) acc 50.0000 (50.0000)"


@pytest.mark.parametrize("trainer", list(RUNS))
def test_two_gloo_processes_equal_one_process(trainer, data, tmp_path, monkeypatch):
    single, double = tmp_path / "single", tmp_path / "double"
    record: list[dict[str, float]] = []
    update = MetricMeter.update
    monkeypatch.setattr(MetricMeter, "update", lambda self, values: (record.append(
        {k: float(v) for k, v in values.items()}), update(self, values))[1])
    main(train_args(data, single, trainer))
    monkeypatch.undo()

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "tests/ddp_driver.py", str(tmp_path / "record.json"), *train_args(data, double, trainer)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    distributed = json.loads((tmp_path / "record.json").read_text())

    assert len(distributed) == len(record) >= 4
    for step, (one, two) in enumerate(zip(record, distributed)):
        assert two.keys() == one.keys() and two == pytest.approx(one, rel=1e-5, abs=1e-6), step
    w1, w2 = final_weights(single, trainer), final_weights(double, trainer)
    assert w1.keys() == w2.keys()
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], rtol=1e-5, atol=1e-6, msg=key)
    results = [json.loads((out / "results.json").read_text()) for out in (single, double)]
    assert [r["processes"] for r in results] == [1, 2]
    metrics = [r["evaluations"]["test"]["metrics"] for r in results]
    assert metrics[1] == pytest.approx(metrics[0], abs=1e-9)
    # rank 0 alone wrote the folder: one log, whose console is rank 0's only
    assert sorted(p.name for p in double.glob("log.txt*")) == ["log.txt"]
    log = (double / "log.txt").read_text()
    assert log.count("Training over 2 processes (torchrun)") == 1 and log.count("Finish training") == 1
    assert proc.stdout.count("Finish training") == 1
