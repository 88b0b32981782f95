"""tools/sweep.py without running a model: the exact commands per protocol, that they are the
methods' own script commands, the output tree, config errors, parallel slots, load epochs."""
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from engine.errors import UserError
from engine.registry import TRAINER_REGISTRY
from sweeps import plan
from sweeps.command import main as sweep_main
from sweeps.local import slot_envs
from engine.processes import process_tree

REPO = Path(__file__).resolve().parents[1]
SCRIPT_DIRS = {"CoOp": "coop", "CoCoOp": "cocoop", "IVLP": "ivlp", "MaPLe": "maple", "PromptSRC": "promptsrc",
               "DeAR": "dear", "MMRL": "mmrl", "MMRLpp": "mmrlpp", "ZeroshotCLIP": "zsclip"}


def dry_run(capsys, *args) -> list[str]:
    assert sweep_main([*args, "--dry-run"]) == 0
    return capsys.readouterr().out.splitlines()


def test_base2new_commands_with_dear_imagenet_config_and_role_map(capsys):
    lines = dry_run(capsys, "--protocol", "base2new", "--methods", "ZeroshotCLIP", "CoOp", "DeAR",
                    "--datasets", "imagenet", "dtd", "--seeds", "1")
    run = "SHOTS=16 bash scripts/run.sh"
    assert lines == [
        f"{run} base2new_zeroshot ZeroshotCLIP vit_b16 imagenet 1",
        f"{run} base2new_train CoOp vit_b16_ep50_ctxv1 imagenet 1",
        f"{run} base2new_test CoOp vit_b16_ep50_ctxv1 imagenet 1",
        f"{run} base2new_train DeAR vit_b16_imagenet imagenet 1",
        f"{run} base2new_test DeAR vit_b16_imagenet imagenet 1 TRAINER.DEAR.ROLE_MAP "
        "output/base2new/train_base/imagenet/shots_16/DeAR/vit_b16_imagenet/seed1/role_map.json",
        f"{run} base2new_zeroshot ZeroshotCLIP vit_b16 dtd 1",
        f"{run} base2new_train CoOp vit_b16_ep50_ctxv1 dtd 1",
        f"{run} base2new_test CoOp vit_b16_ep50_ctxv1 dtd 1",
        f"{run} base2new_train DeAR vit_b16 dtd 1",
        f"{run} base2new_test DeAR vit_b16 dtd 1 TRAINER.DEAR.ROLE_MAP "
        "output/base2new/train_base/dtd/shots_16/DeAR/vit_b16/seed1/role_map.json",
    ]


def test_tiny_config_set_opts_and_roots(capsys, tmp_path):
    lines = dry_run(capsys, "--protocol", "base2new", "--config-set", "tiny",
                    "--methods", "ZeroshotCLIP", "CoOp", "CoCoOp", "IVLP", "MaPLe", "PromptSRC", "DeAR",
                    "--datasets", "attr_color_shape", "--seeds", "2", "--shots", "4",
                    "--opts", "OPTIM.MAX_EPOCH", "1", "--root", str(tmp_path / "d"), "--output", str(tmp_path / "o"))
    env = f"SHOTS=4 DATA={tmp_path / 'd'} OUTPUT={tmp_path / 'o'} bash scripts/run.sh"
    opts = "attr_color_shape 2 OPTIM.MAX_EPOCH 1"
    role_map = f"{tmp_path}/o/base2new/train_base/attr_color_shape/shots_4/DeAR/tiny_ep10_batch4/seed2/role_map.json"
    assert lines == [
        f"{env} base2new_zeroshot ZeroshotCLIP tiny {opts}",
        f"{env} base2new_train CoOp tiny_ep10 {opts}",
        f"{env} base2new_test CoOp tiny_ep10 {opts}",
        f"{env} base2new_train CoCoOp tiny_c4_ep5_batch4_ctxv1 {opts}",
        f"{env} base2new_test CoCoOp tiny_c4_ep5_batch4_ctxv1 {opts}",
        f"{env} base2new_train IVLP tiny_c2_ep5_batch4_2+2ctx {opts}",
        f"{env} base2new_test IVLP tiny_c2_ep5_batch4_2+2ctx {opts}",
        f"{env} base2new_train MaPLe tiny_c2_ep5_batch4_2ctx {opts}",
        f"{env} base2new_test MaPLe tiny_c2_ep5_batch4_2ctx {opts}",
        f"{env} base2new_train PromptSRC tiny_c2_ep10_batch4_4+4ctx {opts}",
        f"{env} base2new_test PromptSRC tiny_c2_ep10_batch4_4+4ctx {opts}",
        f"{env} base2new_train DeAR tiny_ep10_batch4 {opts}",
        f"{env} base2new_test DeAR tiny_ep10_batch4 attr_color_shape 2 TRAINER.DEAR.ROLE_MAP {role_map} "
        "OPTIM.MAX_EPOCH 1",
    ]


def test_xd_trains_once_per_seed_and_zero_shot_evaluates_each_target(capsys):
    lines = dry_run(capsys, "--protocol", "xd", "--methods", "ZeroshotCLIP", "MaPLe", "DeAR",
                    "--datasets", "dtd", "eurosat", "--seeds", "3")
    run = "SHOTS=16 bash scripts/run.sh"
    dear_model = "output/cross_dataset/train/imagenet/shots_16/DeAR/vit_b16_cross_datasets/seed3"
    dear_test = f"TASK CD TRAINER.DEAR.ROLE_MAP {dear_model}/role_map.json"
    assert lines == [
        f"{run} xd_zeroshot ZeroshotCLIP vit_b16 dtd 3",
        f"{run} xd_zeroshot ZeroshotCLIP vit_b16 eurosat 3",
        f"{run} xd_train MaPLe vit_b16_c2_ep5_batch4_2ctx_cross_datasets 3",
        f"{run} xd_test MaPLe vit_b16_c2_ep5_batch4_2ctx_cross_datasets dtd 3",
        f"{run} xd_test MaPLe vit_b16_c2_ep5_batch4_2ctx_cross_datasets eurosat 3",
        f"{run} xd_train DeAR vit_b16_cross_datasets 3 TASK CD",
        f"{run} xd_test DeAR vit_b16_cross_datasets dtd 3 {dear_test}",
        f"{run} xd_test DeAR vit_b16_cross_datasets eurosat 3 {dear_test}",
    ]


def test_mmrl_runs_name_their_task_and_the_official_cross_dataset_options(capsys):
    run = "SHOTS=16 bash scripts/run.sh"
    b2n = dry_run(capsys, "--protocol", "base2new", "--methods", "MMRL", "MMRLpp", "--datasets", "imagenet", "--seeds", "1")
    assert b2n == [f"{run} base2new_{step} {m} vit_b16_imagenet imagenet 1 TASK B2N"
                   for m in ("MMRL", "MMRLpp") for step in ("train", "test")]
    xd = dry_run(capsys, "--protocol", "xd", "--methods", "MMRL", "MMRLpp", "--datasets", "eurosat", "--seeds", "1")
    assert xd == [
        f"{run} xd_train MMRL vit_b16_cross_datasets 1 TASK CD TRAINER.MMRL.REG_WEIGHT 0.2",
        f"{run} xd_test MMRL vit_b16_cross_datasets eurosat 1 TASK CD TRAINER.MMRL.REG_WEIGHT 0.2 TRAINER.MMRL.REP_DIM 512",
        f"{run} xd_train MMRLpp vit_b16_cross_datasets 1 TASK CD",
        f"{run} xd_test MMRLpp vit_b16_cross_datasets eurosat 1 TASK CD",
    ]
    fs = dry_run(capsys, "--protocol", "fewshot", "--methods", "MMRLpp", "--datasets", "imagenet", "dtd", "--seeds", "1",
                 "--shots", "2")
    assert fs == [f"SHOTS=2 bash scripts/run.sh few_shot MMRLpp {c} {d} 1 TASK FS"
                  for c, d in (("vit_b16_imagenet", "imagenet"), ("vit_b16_few_shot", "dtd"))]


def test_dg_evaluates_the_xd_model_on_the_imagenet_variants_by_default(capsys):
    lines = dry_run(capsys, "--protocol", "dg", "--methods", "CoOp", "--seeds", "1")
    run = "SHOTS=16 bash scripts/run.sh"
    assert lines == [f"{run} xd_train CoOp vit_b16_ep50 1"] + [
        f"{run} xd_test CoOp vit_b16_ep50 {d} 1" for d in ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")]


def test_fewshot_shots_gpa_per_dataset_and_one_zero_shot_run_per_dataset(capsys):
    lines = dry_run(capsys, "--protocol", "fewshot", "--methods", "ZeroshotCLIP", "PromptSRC", "DeAR",
                    "--datasets", "imagenet", "dtd", "--seeds", "1", "2", "--shots", "2", "8")
    psrc = "PromptSRC vit_b16_c2_ep50_batch4_4+4ctx_few_shot"
    gpa = "TRAINER.PROMPTSRC.GPA_MEAN 45 TRAINER.PROMPTSRC.GPA_STD 5"
    run = "bash scripts/run.sh few_shot"
    expected = ["SHOTS=0 bash scripts/run.sh few_shot_zeroshot ZeroshotCLIP vit_b16 imagenet 1"]
    expected += [f"SHOTS={k} {run} {psrc} imagenet {s}" for k in (2, 8) for s in (1, 2)]
    expected += [f"SHOTS={k} {run} DeAR vit_b16_imagenet imagenet {s} TASK FS" for k in (2, 8) for s in (1, 2)]
    expected += ["SHOTS=0 bash scripts/run.sh few_shot_zeroshot ZeroshotCLIP vit_b16 dtd 1"]
    expected += [f"SHOTS={k} {run} {psrc} dtd {s} {gpa}" for k in (2, 8) for s in (1, 2)]
    expected += [f"SHOTS={k} {run} DeAR vit_b16_few_shot dtd {s} TASK FS" for k in (2, 8) for s in (1, 2)]
    assert lines == expected


def test_coop_fewshot_follows_coops_epochs_per_shots_and_imagenet(capsys):
    lines = dry_run(capsys, "--protocol", "fewshot", "--methods", "CoOp", "--datasets", "imagenet", "caltech101",
                    "--seeds", "1")
    configs = ["vit_b16_ep50"] * 5 + ["vit_b16_ep50", "vit_b16_ep100", "vit_b16_ep100", "vit_b16", "vit_b16"]
    shots = [1, 2, 4, 8, 16] * 2
    datasets = ["imagenet"] * 5 + ["caltech101"] * 5
    run = "bash scripts/run.sh few_shot CoOp"
    assert lines == [f"SHOTS={k} {run} {c} {d} 1" for k, c, d in zip(shots, configs, datasets)]


def test_default_datasets_per_protocol(capsys):
    xd = dry_run(capsys, "--protocol", "xd", "--methods", "CoOp", "--seeds", "1")
    targets = [line.split()[-2] for line in xd if " xd_test " in line]
    assert targets == ["caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101", "fgvc_aircraft",
                       "sun397", "dtd", "eurosat", "ucf101"]
    base2new = dry_run(capsys, "--protocol", "base2new", "--methods", "CoOp", "--seeds", "1")
    assert [line.split()[-2] for line in base2new if "base2new_train" in line] == ["imagenet", *targets]


def test_configs_override_and_errors(capsys):
    lines = dry_run(capsys, "--protocol", "base2new", "--methods", "CoOp", "--datasets", "dtd", "--seeds", "1",
                    "--configs", "CoOp=vit_b16_ep100")
    assert lines[0] == "SHOTS=16 bash scripts/run.sh base2new_train CoOp vit_b16_ep100 dtd 1"
    with pytest.raises(UserError, match=r"--methods: Unknown trainer 'MaPle'. Did you mean 'MaPLe'\?"):
        sweep_main(["--protocol", "base2new", "--methods", "MaPle", "--dry-run"])
    with pytest.raises(UserError, match=r"CoCoOp.SWEEP_CONFIGS has no 'fewshot'\nPass one with --configs METHOD=CFG"):
        sweep_main(["--protocol", "fewshot", "--methods", "CoCoOp", "--dry-run"])
    with pytest.raises(UserError, match=r"configs/trainers/CoOp/vit_b99.yaml does not exist"):
        sweep_main(["--protocol", "base2new", "--methods", "CoOp", "--configs", "CoOp=vit_b99", "--dry-run"])
    with pytest.raises(UserError, match=r"'MaPLe' is not in --methods"):
        sweep_main(["--protocol", "base2new", "--methods", "CoOp", "--configs", "MaPLe=x", "--dry-run"])
    with pytest.raises(UserError, match=r"no configs/datasets/dtdd.yaml. Did you mean 'dtd'\?"):
        sweep_main(["--protocol", "base2new", "--methods", "CoOp", "--datasets", "dtdd", "--dry-run"])


def test_every_sweep_config_exists():
    for name in TRAINER_REGISTRY.names():
        for key, cfg in TRAINER_REGISTRY.get(name).SWEEP_CONFIGS.items():
            assert (REPO / "configs" / "trainers" / name / f"{cfg}.yaml").is_file(), (name, key, cfg)


# ---- the sweep issues the methods' script commands -------------------------------------------------
def recorded(log: Path, command: list[str], stub: Path, env=None) -> list[str]:
    log.unlink(missing_ok=True)
    environ = {**os.environ, "PYTHON": str(stub), "DATA": "/data/x", **(env or {})}
    subprocess.run(command, cwd=REPO, env=environ, check=True, capture_output=True, text=True)
    return log.read_text().splitlines()


def sweep_calls(capsys, log, stub, *args) -> list[str]:
    """train.py calls of the sweep's commands, run as printed."""
    return recorded(log, ["bash", "-c", "set -e\n" + "\n".join(dry_run(capsys, *args))], stub)


def script_calls(log, stub, method, script, *args, env=None) -> list[str]:
    return recorded(log, ["bash", f"scripts/{SCRIPT_DIRS[method]}/{script}", *args], stub, env)


@pytest.mark.parametrize("method", ["CoOp", "CoCoOp", "IVLP", "MaPLe", "PromptSRC", "DeAR", "MMRL", "MMRLpp"])
def test_base2new_equals_the_method_scripts(capsys, fake_python, method):
    stub, log = fake_python
    for dataset in ("dtd", "imagenet"):
        expected = (script_calls(log, stub, method, "base2new_train.sh", dataset, "1")
                    + script_calls(log, stub, method, "base2new_test.sh", dataset, "1"))
        got = sweep_calls(capsys, log, stub, "--protocol", "base2new", "--methods", method, "--datasets", dataset,
                          "--seeds", "1")
        assert got == expected and len(got) == 2


def test_zero_shot_base2new_equals_its_script(capsys, fake_python):
    stub, log = fake_python
    expected = script_calls(log, stub, "ZeroshotCLIP", "base2new.sh", "eurosat", "2")
    assert sweep_calls(capsys, log, stub, "--protocol", "base2new", "--methods", "ZeroshotCLIP",
                       "--datasets", "eurosat", "--seeds", "2") == expected
    assert len(expected) == 2


@pytest.mark.parametrize("method", ["CoCoOp", "IVLP", "MaPLe", "PromptSRC", "DeAR", "MMRL", "MMRLpp"])
def test_xd_and_dg_equal_the_method_scripts(capsys, fake_python, method):
    stub, log = fake_python
    expected = script_calls(log, stub, method, "xd_train.sh", "2")
    for target in ("oxford_pets", "imagenet_r"):
        expected += script_calls(log, stub, method, "xd_test.sh", target, "2")
    xd = sweep_calls(capsys, log, stub, "--protocol", "xd", "--methods", method, "--datasets", "oxford_pets",
                     "--seeds", "2")
    dg = sweep_calls(capsys, log, stub, "--protocol", "dg", "--methods", method, "--datasets", "imagenet_r",
                     "--seeds", "2")
    assert xd + dg[1:] == expected and dg[0] == xd[0]


@pytest.mark.parametrize("method", ["PromptSRC", "DeAR", "MMRL", "MMRLpp"])
def test_fewshot_equals_the_method_scripts(capsys, fake_python, method):
    stub, log = fake_python
    for dataset in ("stanford_cars", "imagenet"):
        expected = script_calls(log, stub, method, "few_shot.sh", dataset, "3", env={"SHOTS_LIST": "1 4"})
        got = sweep_calls(capsys, log, stub, "--protocol", "fewshot", "--methods", method, "--datasets", dataset,
                          "--seeds", "3", "--shots", "1", "4")
        assert got == expected and len(got) == 2


def test_tiny_set_equals_the_tiny_attr_script(capsys, fake_python):
    stub, log = fake_python
    expected = script_calls(log, stub, "DeAR", "tiny_attr_base2new.sh", "attr_texture_shape", "1")
    got = sweep_calls(capsys, log, stub, "--protocol", "base2new", "--config-set", "tiny", "--methods",
                      "ZeroshotCLIP", "CoOp", "DeAR", "--datasets", "attr_texture_shape", "--seeds", "1")
    assert got == expected and len(got) == 6


def shell(function: str, *args, env) -> str:
    command = f'source scripts/common.sh && {function} {" ".join(args)}'
    return subprocess.run(["bash", "-c", command], cwd=REPO, check=True, capture_output=True, text=True,
                          env={**os.environ, **env}).stdout.strip()


def test_output_tree_matches_common_sh(tmp_path):
    env = {"OUTPUT": str(tmp_path), "SHOTS": "4"}
    out = str(tmp_path)
    assert plan.base2new_dir(out, "test_new", "CoOp", "c", "dtd", 2, 4) == shell(
        "base2new_dir", "test_new", "CoOp", "c", "dtd", "2", env=env)
    assert plan.xd_dir(out, "train", "CoOp", "c", "imagenet", 2, 4) == shell(
        "xd_dir", "train", "CoOp", "c", "imagenet", "2", env=env)
    assert plan.few_shot_dir(out, "CoOp", "c", "dtd", 2, 4) == shell("few_shot_dir", "CoOp", "c", "dtd", "2", env=env)
    assert shell("base2new_dir", "train_base", "CoOp", "c", "dtd", "1", env={}) == (
        "output/base2new/train_base/dtd/shots_16/CoOp/c/seed1")


def test_test_steps_load_the_epoch_the_model_was_trained_to(fake_python, tmp_path):
    """A command-line OPTIM.MAX_EPOCH on training is what the test loads (results.json's config)."""
    stub, log = fake_python
    env = {"OUTPUT": str(tmp_path / "out")}
    model = Path(plan.base2new_dir(env["OUTPUT"], "train_base", "CoOp", "tiny_ep10", "dtd", 1, 16))
    (test,) = recorded(log, ["bash", "scripts/run.sh", "base2new_test", "CoOp", "tiny_ep10", "dtd", "1"], stub, env)
    assert f"--model-dir {model} --load-epoch 10 --eval-only" in test  # not trained yet: the config's
    model.mkdir(parents=True)
    (model / "results.json").write_text(json.dumps({"config": {"OPTIM": {"MAX_EPOCH": 1}}}))
    (test,) = recorded(log, ["bash", "scripts/run.sh", "base2new_test", "CoOp", "tiny_ep10", "dtd", "1"], stub, env)
    assert f"--model-dir {model} --load-epoch 1 --eval-only" in test
    xd_model = Path(plan.xd_dir(env["OUTPUT"], "train", "CoOp", "vit_b16_ep50", "imagenet", 1, 16))
    xd_model.mkdir(parents=True)
    (xd_model / "results.json").write_text(json.dumps({"config": {"OPTIM": {"MAX_EPOCH": 3}}}))
    (test,) = recorded(log, ["bash", "scripts/run.sh", "xd_test", "CoOp", "vit_b16_ep50", "dtd", "1"], stub, env)
    assert f"--model-dir {xd_model} --load-epoch 3 --eval-only" in test


def test_zero_shot_steps_and_unknown_step(fake_python, tmp_path):
    stub, log = fake_python
    env = {"OUTPUT": "o"}
    step = ["bash", "scripts/run.sh", "xd_zeroshot", "ZeroshotCLIP", "vit_b16", "dtd", "1", "A", "b"]
    (xd,) = recorded(log, step, stub, env)
    assert xd == ("train.py --root /data/x --output-dir o/cross_dataset/test/dtd/shots_16/ZeroshotCLIP/vit_b16/seed1 "
                  "--skip-finished --seed 1 --trainer ZeroshotCLIP --eval-only --dataset-config-file configs/datasets/dtd.yaml "
                  "--config-file configs/trainers/ZeroshotCLIP/vit_b16.yaml A b")
    (few,) = recorded(log, ["bash", "scripts/run.sh", "few_shot_zeroshot", "ZeroshotCLIP", "vit_b16", "dtd", "1"], stub,
                      {**env, "SHOTS": "8"})
    assert "--output-dir o/few_shot/dtd/shots_0/ZeroshotCLIP/vit_b16/seed1 " in few
    assert few.endswith("DATASET.NUM_SHOTS 0")
    bad = subprocess.run(["bash", "scripts/run.sh", "rm", "-rf", "x"], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown step 'rm'" in bad.stderr


def test_nproc_runs_train_py_under_torchrun(fake_python):
    stub, log = fake_python
    step = ["bash", "scripts/run.sh", "base2new_train", "CoOp", "tiny_ep10", "dtd", "1"]
    (single,) = recorded(log, step, stub, {"OUTPUT": "o"})
    (ddp,) = recorded(log, step, stub, {"OUTPUT": "o", "NPROC": "4"})
    assert single.startswith("train.py --root /data/x --output-dir o/base2new/train_base/dtd/")
    assert ddp == f"-m torch.distributed.run --standalone --nproc-per-node 4 {single}"


def test_parallel_slots_split_gpus_and_cpu_threads(monkeypatch):
    assert slot_envs(3, ["0", "1"]) == [{"CUDA_VISIBLE_DEVICES": d} for d in ("0", "1", "0")]
    assert slot_envs(3, ["0", "1", "2", "3", "4"], nproc=2) == [  # a DDP run on each pair; GPU 4 left over
        {"CUDA_VISIBLE_DEVICES": "0,1"}, {"CUDA_VISIBLE_DEVICES": "2,3"}, {"CUDA_VISIBLE_DEVICES": "0,1"}]
    with pytest.raises(UserError, match="NPROC=4 asks for 4 GPUs per run, but only 2 are visible"):
        slot_envs(1, ["0", "1"], nproc=4)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert slot_envs(3, []) == [{"OMP_NUM_THREADS": "2"}] * 3
    assert slot_envs(16, []) == [{"OMP_NUM_THREADS": "1"}] * 16
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice stands
    assert slot_envs(2, []) == [{}, {}]


def test_process_tree_finds_grandchildren():
    proc = subprocess.Popen(["bash", "-c", "sleep 30 & wait"])
    try:
        for _ in range(100):
            tree = process_tree(proc.pid)
            if len(tree) == 2:
                break
            time.sleep(0.05)
        assert tree[0] == proc.pid and len(tree) == 2
    finally:
        for pid in reversed(tree):
            os.kill(pid, 9)
        proc.wait()
