"""scripts/dear/*.sh: the commands they run, the shared output tree, skip rule, load epoch."""
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(script, *args, stub, env=None):
    environ = {**os.environ, "PYTHON": str(stub), "DATA": "/data/x", **(env or {})}
    subprocess.run(["bash", str(REPO / "scripts" / "dear" / script), *args], check=True, env=environ,
                   capture_output=True, text=True)


def test_base2new_train_and_test_commands(fake_python):
    stub, log = fake_python
    run("base2new_train.sh", "caltech101", "1", stub=stub)
    run("base2new_test.sh", "caltech101", "1", stub=stub)
    run("base2new_test.sh", "imagenet", "2", stub=stub)
    train, test, imagenet = log.read_text().splitlines()
    base = "output/base2new/train_base/caltech101/shots_16/DeAR/vit_b16/seed1"
    assert train.startswith(f"train.py --root /data/x --output-dir {base} --skip-finished --seed 1 --trainer DeAR")
    assert "--config-file configs/trainers/DeAR/vit_b16.yaml" in train
    assert train.endswith("DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base")
    assert "--output-dir output/base2new/test_new/caltech101/shots_16/DeAR/vit_b16/seed1" in test
    assert f"--model-dir {base} --load-epoch 10 --eval-only" in test
    assert test.endswith(f"DATASET.SUBSAMPLE_CLASSES new TRAINER.DEAR.ROLE_MAP {base}/role_map.json")
    assert "configs/trainers/DeAR/vit_b16_imagenet.yaml" in imagenet and "--load-epoch 5 " in imagenet


def test_the_skip_rule_is_train_py_s_and_print_runs_lists_without_running(fake_python):
    """run_job leaves skipping to train.py --skip-finished (it compares run manifests:
    tests/test_run_integrity.py); PRINT_RUNS prints the command instead (tools/sweep.py)."""
    stub, log = fake_python
    environ = {**os.environ, "PYTHON": str(stub), "DATA": "/data/x", "PRINT_RUNS": "1"}
    out = subprocess.run(["bash", str(REPO / "scripts/dear/base2new_train.sh"), "dtd", "3"], env=environ,
                         check=True, capture_output=True, text=True).stdout
    assert out.startswith("train.py --root /data/x --output-dir output/base2new/train_base/dtd/shots_16/DeAR/"
                          "vit_b16/seed3 --skip-finished --seed 3 --trainer DeAR")
    assert not log.exists()


def test_cross_dataset_and_few_shot_commands(fake_python):
    stub, log = fake_python
    run("xd_train.sh", "1", stub=stub)
    run("xd_test.sh", "oxford_pets", "1", stub=stub)
    run("few_shot.sh", "dtd", "2", stub=stub, env={"SHOTS_LIST": "1 4"})
    xd_train, xd_test, one, four = log.read_text().splitlines()
    source = "output/cross_dataset/train/imagenet/shots_16/DeAR/vit_b16_cross_datasets/seed1"
    assert f"--output-dir {source} " in xd_train and "configs/datasets/imagenet.yaml" in xd_train
    assert "--output-dir output/cross_dataset/test/oxford_pets/shots_16/DeAR/vit_b16_cross_datasets/seed1" in xd_test
    assert xd_train.endswith("DATASET.NUM_SHOTS 16 TASK CD")
    assert f"--model-dir {source} --load-epoch 1 --eval-only TASK CD TRAINER.DEAR.ROLE_MAP {source}/role_map.json" in xd_test
    assert "output/few_shot/dtd/shots_1/DeAR/vit_b16_few_shot/seed2" in one and one.endswith("DATASET.NUM_SHOTS 1 TASK FS")
    assert "output/few_shot/dtd/shots_4/DeAR/vit_b16_few_shot/seed2" in four and four.endswith("DATASET.NUM_SHOTS 4 TASK FS")


def test_quickstart_runs_zeroshot_coop_and_dear_then_the_table(fake_python, tmp_path):
    stub, log = fake_python
    environ = {**os.environ, "PYTHON": str(stub), "DATA": "/data/x", "OUTPUT": str(tmp_path / "out")}
    out = subprocess.run(["bash", str(REPO / "scripts" / "quickstart.sh")], check=True, env=environ,
                         capture_output=True, text=True).stdout
    calls = log.read_text().splitlines()
    runs = [(c.split("--trainer ")[1].split()[0], "--eval-only" in c, c.split("DATASET.SUBSAMPLE_CLASSES ")[1].split()[0])
            for c in calls if c.startswith("train.py")]
    assert runs == [("ZeroshotCLIP", True, "base"), ("ZeroshotCLIP", True, "new"), ("CoOp", False, "base"),
                    ("CoOp", True, "new"), ("DeAR", False, "base"), ("DeAR", True, "new")]
    assert all("configs/datasets/attr_hue_shift.yaml" in c and "--seed 1 " in c for c in calls[:6])
    base = f"{tmp_path}/out/base2new/train_base/attr_hue_shift/shots_16/DeAR/tiny_ep10_batch4/seed1"
    assert calls[6] == (f"tools/compare.py {tmp_path}/out --datasets attr_hue_shift --methods ZeroshotCLIP/tiny "
                        f"CoOp/tiny_ep10 DeAR/tiny_ep10_batch4 --plot {tmp_path}/out/quickstart_attr_hue_shift.png")
    assert f"DeAR's head roles:       {base}/role_map.png" in out
