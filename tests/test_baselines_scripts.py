"""scripts/{cocoop,ivlp,maple,promptsrc}/*.sh: every command names an existing config, the
shared output tree, and a load epoch the config reaches; PromptSRC few-shot GPA per dataset."""
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
METHODS = {"cocoop": "CoCoOp", "ivlp": "IVLP", "maple": "MaPLe", "promptsrc": "PromptSRC"}


def calls(stub, log, method, script, *args, env=None):
    log.unlink(missing_ok=True)
    environ = {**os.environ, "PYTHON": str(stub), "DATA": "/data/x", **(env or {})}
    subprocess.run(["bash", str(REPO / "scripts" / method / script), *args], check=True, env=environ,
                   capture_output=True, text=True)
    return log.read_text().splitlines()


def arg(call, flag):
    return re.search(rf"{flag} (\S+)", call).group(1)


def shared_dir(function, *args):
    """The directory scripts/common.sh assigns (one output tree for every method)."""
    command = f'source scripts/common.sh && {function} {" ".join(args)}'
    return subprocess.run(["bash", "-c", command], cwd=REPO, check=True, capture_output=True, text=True).stdout.strip()


@pytest.mark.parametrize("method", METHODS)
def test_every_script_uses_an_existing_config_and_its_last_epoch(fake_python, method):
    stub, log = fake_python
    trainer = METHODS[method]
    (train,) = calls(stub, log, method, "base2new_train.sh", "dtd", "1")
    (test,) = calls(stub, log, method, "base2new_test.sh", "dtd", "1")
    (xd_train,) = calls(stub, log, method, "xd_train.sh", "2")
    (xd_test,) = calls(stub, log, method, "xd_test.sh", "eurosat", "2")
    for call in (train, test, xd_train, xd_test):
        config = REPO / arg(call, "--config-file")
        assert config.is_file() and config.parent.name == trainer and f"--trainer {trainer} " in call
    cfg = arg(train, "--config-file").split("/")[-1][:-5]
    out = shared_dir("base2new_dir", "train_base", trainer, cfg, "dtd", "1")
    assert out == f"output/base2new/train_base/dtd/shots_16/{trainer}/{cfg}/seed1"
    assert arg(train, "--output-dir") == out and train.endswith("DATASET.SUBSAMPLE_CLASSES base")
    assert arg(test, "--model-dir") == out and test.endswith("DATASET.SUBSAMPLE_CLASSES new")
    assert arg(test, "--output-dir") == shared_dir("base2new_dir", "test_new", trainer, cfg, "dtd", "1")
    xd_cfg = arg(xd_train, "--config-file").split("/")[-1][:-5]
    assert arg(xd_train, "--output-dir") == shared_dir("xd_dir", "train", trainer, xd_cfg, "imagenet", "2")
    assert arg(xd_test, "--output-dir") == shared_dir("xd_dir", "test", trainer, xd_cfg, "eurosat", "2")
    assert arg(xd_test, "--model-dir") == arg(xd_train, "--output-dir") and "--eval-only" in xd_test
    assert "configs/datasets/eurosat.yaml" in xd_test and "configs/datasets/imagenet.yaml" in xd_train
    for call in (test, xd_test):
        epochs = yaml.safe_load((REPO / arg(call, "--config-file")).read_text())["OPTIM"]["MAX_EPOCH"]
        assert int(arg(call, "--load-epoch")) == epochs


def test_promptsrc_few_shot_gpa_per_dataset(fake_python):
    stub, log = fake_python
    pets = calls(stub, log, "promptsrc", "few_shot.sh", "oxford_pets", "1", env={"SHOTS_LIST": "1 16"})
    cars = calls(stub, log, "promptsrc", "few_shot.sh", "stanford_cars", "1", env={"SHOTS_LIST": "4"})
    assert [arg(c, "DATASET.NUM_SHOTS") for c in pets] == ["1", "16"]
    assert all("GPA" not in c and "_few_shot.yaml" in c for c in pets)
    assert (REPO / arg(pets[0], "--config-file")).is_file()
    assert cars[0].endswith("DATASET.NUM_SHOTS 4 TRAINER.PROMPTSRC.GPA_MEAN 45 TRAINER.PROMPTSRC.GPA_STD 5")
