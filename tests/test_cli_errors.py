"""Bad input through train.py and the tools: one `error:` block naming the file, key or flag, the
exit code (2 usage, 1 data/config), and no traceback unless --debug asks for it."""
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.cli import run_cli
from engine.run_folder import RunFolder
from tests.minidata import make_caltech_like
from train import main as train_main

REPO = Path(__file__).resolve().parents[1]
TOOLS = {name: importlib.import_module(f"tools.{name}")
         for name in ("compare", "parse_test_res", "sweep", "verify_data", "download_splits")}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A data root, a finished 1-epoch CoOp run, and damaged copies of its files."""
    base = tmp_path_factory.mktemp("world")
    root = make_caltech_like(base / "data")
    run = base / "run"
    train_main(base_args(root, run))
    bad = base / "bad"
    shutil.copytree(root / "caltech-101", bad / "caltech-101")
    (bad / "caltech-101" / "split_zhou_Caltech101.json").write_text('{"train": [\n oops')
    fewshot = base / "fewshot"
    shutil.copytree(root / "caltech-101", fewshot / "caltech-101")
    (fewshot / "caltech-101" / "split_fewshot").mkdir()
    (fewshot / "caltech-101" / "split_fewshot" / "shot_2-seed_1.json").write_text("[")
    nosplit = base / "nosplit"
    shutil.copytree(root / "caltech-101", nosplit / "caltech-101")
    (nosplit / "caltech-101" / "split_zhou_Caltech101.json").write_text('{"train": [], "val": []}')
    truncated = base / "truncated"
    shutil.copytree(run, truncated)
    ckpt = truncated / "prompt_learner" / "model.pth.tar-1"
    ckpt.write_bytes(ckpt.read_bytes()[:64])
    crafted = base / "crafted"
    shutil.copytree(run, crafted)
    torch.save({"state_dict": {}, "x": Exploit()}, crafted / "prompt_learner" / "model.pth.tar-1")
    (crafted / "prompt_learner" / "model.pth.tar-1.sha256").unlink()  # a file from elsewhere: no digest of ours
    escaping = base / "escaping"
    shutil.copytree(run, escaping)
    (escaping / "prompt_learner" / "checkpoint").write_text("../../../etc/passwd\n")
    yaml_bad = base / "bad.yaml"
    yaml_bad.write_text("OPTIM:\n  LR: 0.1\n   MAX_EPOCH: 3\n")
    yaml_dup = base / "dup.yaml"
    yaml_dup.write_text("OPTIM:\n  LR: 0.1\n  MAX_EPOCH: 3\n  LR: 0.002\n")
    yaml_nan = base / "nan.yaml"
    yaml_nan.write_text("OPTIM:\n  LR: .nan\n")
    results = base / "results_tree" / "base2new" / "train_base" / "dtd" / "shots_16" / "CoOp" / "c" / "seed1"
    results.mkdir(parents=True)
    (results / "results.json").write_text("{not json")
    return {"root": root, "run": run, "bad": bad, "fewshot": fewshot, "nosplit": nosplit, "truncated": truncated,
            "crafted": crafted, "escaping": escaping, "yaml_bad": yaml_bad, "yaml_dup": yaml_dup,
            "yaml_nan": yaml_nan, "base": base,
            "results_tree": base / "results_tree"}


class Exploit:
    def __reduce__(self):
        return os.system, ("true",)


def base_args(root, out, *extra):
    return ["--root", str(root), "--seed", "1", "--trainer", "CoOp",
            "--dataset-config-file", "configs/datasets/caltech101.yaml",
            "--config-file", "configs/trainers/CoOp/vit_b16_ep50.yaml", "--output-dir", str(out), *extra,
            "MODEL.BACKBONE.NAME", "tiny-test", "MODEL.BACKBONE.PRETRAINED", "False", "INPUT.SIZE", "(32, 32)",
            "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "DATALOADER.TEST.BATCH_SIZE", "8",
            "OPTIM.MAX_EPOCH", "1", "TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.PREC", "fp32"]


def replace_flag(args, flag, value):
    i = args.index(flag)
    return args[:i + 1] + [value] + args[i + 2:]


# (id, command, argv from the world and a fresh folder, exit code, what the message must name: format
# strings over the world's paths and {o}, the fresh folder)
CASES = [
    ("missing config file", "train", lambda w, o: replace_flag(base_args(w["root"], o), "--config-file", "configs/trainers/CoOp/nope.yaml"),
     1, ["configs/trainers/CoOp/nope.yaml (given by --config-file) does not exist"]),
    ("missing dataset config", "train", lambda w, o: replace_flag(base_args(w["root"], o), "--dataset-config-file", "configs/datasets/nope.yaml"),
     1, ["configs/datasets/nope.yaml (given by --dataset-config-file) does not exist"]),
    ("yaml syntax", "train", lambda w, o: replace_flag(base_args(w["root"], o), "--config-file", str(w["yaml_bad"])),
     1, ["{yaml_bad} (given by --config-file) is not valid YAML at line 3"]),
    ("unknown key", "train", lambda w, o: base_args(w["root"], o) + ["OPTIM.LRR", "0.1"],
     1, ["Unknown config key 'OPTIM.LRR' on the command line. Did you mean 'OPTIM.LR'?"]),
    ("odd opts", "train", lambda w, o: base_args(w["root"], o) + ["OPTIM.LR"],
     1, ["must be KEY VALUE pairs"]),
    ("type mismatch", "train", lambda w, o: base_args(w["root"], o) + ["OPTIM.MAX_EPOCH", "many"],
     1, ["Config key OPTIM.MAX_EPOCH on the command line: cannot take 'many'"]),
    ("unknown trainer", "train", lambda w, o: replace_flag(base_args(w["root"], o), "--trainer", "CoOOp"),
     1, ["--trainer / TRAINER.NAME: Unknown trainer 'CoOOp'. Did you mean 'CoOp'?"]),
    ("unknown flag", "train", lambda w, o: ["--bogus"] + base_args(w["root"], o),
     2, ["unrecognized arguments: --bogus"]),
    ("flag after options", "train", lambda w, o: base_args(w["root"], o) + ["--eval-only"],
     2, ["--eval-only comes after the KEY VALUE options"]),
    ("eval without model", "train", lambda w, o: base_args(w["root"], o, "--eval-only"),
     1, ["--eval-only needs --model-dir"]),
    ("model dir missing", "train", lambda w, o: base_args(w["root"], o, "--eval-only", "--model-dir", str(o) + "-nope"),
     1, ["Model not found at", "Checkpoints there: none"]),
    ("load epoch missing", "train", lambda w, o: base_args(w["root"], o, "--eval-only", "--model-dir", str(w["run"]), "--load-epoch", "7"),
     1, ["model.pth.tar-7", "Checkpoints there: ['model.pth.tar-1']"]),
    ("data root wrong", "train", lambda w, o: replace_flag(base_args(w["root"], o), "--root", str(o) + "-nodata"),
     1, ["dataset folder", "Set DATASET.ROOT", "tools/verify_data.py"]),
    ("split incomplete", "train", lambda w, o: replace_flag(base_args(w["root"], o), "--root", str(w["nosplit"])),
     1, ["split_zhou_Caltech101.json: split file lacks ['test']"]),
    ("split invalid json", "train", lambda w, o: replace_flag(base_args(w["root"], o), "--root", str(w["bad"])),
     1, ["split_zhou_Caltech101.json is not valid JSON", "at line 2"]),
    ("fewshot cache invalid", "train", lambda w, o: replace_flag(base_args(w["root"], o), "--root", str(w["fewshot"])) + ["DATASET.NUM_SHOTS", "2"],
     1, ["shot_2-seed_1.json is not valid JSON", "regenerated"]),
    ("zero epochs", "train", lambda w, o: base_args(w["root"], o) + ["OPTIM.MAX_EPOCH", "0"],
     1, ["OPTIM.MAX_EPOCH 0"]),
    ("unknown backbone", "train", lambda w, o: base_args(w["root"], o) + ["MODEL.BACKBONE.NAME", "ViT-Q/99"],
     1, ["MODEL.BACKBONE.NAME: unknown CLIP backbone 'ViT-Q/99'"]),
    ("unknown prec", "train", lambda w, o: base_args(w["root"], o) + ["TRAINER.COOP.PREC", "fp8"],
     1, ["TRAINER.COOP.PREC must be one of"]),
    ("subsample", "train", lambda w, o: base_args(w["root"], o) + ["DATASET.SUBSAMPLE_CLASSES", "half"],
     1, ["DATASET.SUBSAMPLE_CLASSES must be 'all', 'base' or 'new'"]),
    ("optimizer", "train", lambda w, o: base_args(w["root"], o) + ["OPTIM.NAME", "adamx"],
     1, ["OPTIM.NAME: unknown optimizer 'adamx'"]),
    ("transform", "train", lambda w, o: base_args(w["root"], o) + ["INPUT.TRANSFORMS", "('flip',)"],
     1, ["INPUT.TRANSFORMS"]),
    ("folder of another run", "train", lambda w, o: replace_flag(base_args(w["root"], w["run"]), "--seed", "5"),
     1, ["{run} holds", "seed: 1 (recorded) vs 5 (this run)", "--start-over"]),
    ("truncated checkpoint", "train", lambda w, o: base_args(w["root"], o, "--eval-only", "--model-dir", str(w["truncated"])),
     1, ["model.pth.tar-1 is damaged"]),
    ("crafted checkpoint", "train", lambda w, o: base_args(w["root"], o, "--eval-only", "--model-dir", str(w["crafted"])),
     1, ["Refusing to load", "model.pth.tar-1: it holds Python objects (posix.system)"]),
    ("escaping pointer", "train", lambda w, o: base_args(w["root"], o, "--eval-only", "--model-dir", str(w["escaping"])),
     1, ["prompt_learner/checkpoint names '../../../etc/passwd'"]),
    ("compare empty", "compare", lambda w, o: [str(o)], 1, ["No base2new results under {o}"]),
    ("compare bad protocol", "compare", lambda w, o: [str(o), "--protocol", "b2n"], 2, ["--protocol: invalid choice: 'b2n'"]),
    ("compare corrupt results", "compare", lambda w, o: [str(w["results_tree"])], 1, ["results.json is not valid JSON"]),
    ("parse not a folder", "parse_test_res", lambda w, o: [str(o) + "-nope"], 1, ["-nope is not a folder"]),
    ("sweep unknown method", "sweep", lambda w, o: ["--protocol", "base2new", "--methods", "MaPle", "--dry-run"],
     2, ["--methods: Unknown trainer 'MaPle'. Did you mean 'MaPLe'?"]),
    ("sweep unknown dataset", "sweep", lambda w, o: ["--protocol", "base2new", "--methods", "CoOp", "--datasets", "dtdd"],
     2, ["--datasets: no configs/datasets/dtdd.yaml. Did you mean 'dtd'?"]),
    ("verify root missing", "verify_data", lambda w, o: ["--root", str(o) + "-nope"], 2, ["--root", "-nope is not a folder"]),
    ("verify unknown dataset", "verify_data", lambda w, o: ["--root", str(o), "--dataset", "Caltech"], 2,
     ["Did you mean 'Caltech101'?"]),
    ("download unknown dataset", "download_splits", lambda w, o: ["--root", str(o), "--dataset", "Petz"], 2,
     ["Unknown dataset 'Petz'"]),
]
# Refused before the output folder is claimed and before any data or model is loaded.
EARLY_CASES = [
    ("zero batch", "train", lambda w, o: base_args(w["root"], o) + ["DATALOADER.TRAIN_X.BATCH_SIZE", "0"],
     1, ["DATALOADER.TRAIN_X.BATCH_SIZE 0: a batch holds at least 1 image"]),
    ("negative batch", "train", lambda w, o: base_args(w["root"], o) + ["DATALOADER.TEST.BATCH_SIZE", "-4"],
     1, ["DATALOADER.TEST.BATCH_SIZE -4: a batch holds at least 1 image"]),
    ("negative lr", "train", lambda w, o: base_args(w["root"], o) + ["OPTIM.LR", "-0.1"],
     1, ["OPTIM.LR -0.1 is negative"]),
    ("nan lr", "train", lambda w, o: replace_flag(base_args(w["root"], o), "--config-file", str(w["yaml_nan"])),
     1, ["OPTIM.LR is nan: a config value must be a finite number"]),
    ("zero input size", "train", lambda w, o: base_args(w["root"], o) + ["INPUT.SIZE", "(0, 0)"],
     1, ["INPUT.SIZE (0, 0): give (height, width), two whole numbers >= 1"]),
    ("root is a file", "train", lambda w, o: replace_flag(base_args(w["root"], o), "--root", str(w["yaml_bad"])),
     2, ["--root (DATASET.ROOT) {yaml_bad} is a file, not a folder"]),
    ("empty output dir", "train", lambda w, o: replace_flag(base_args(w["root"], o), "--output-dir", ""),
     2, ["--output-dir (OUTPUT_DIR) is empty"]),
    ("output dir is a file", "train", lambda w, o: replace_flag(base_args(w["root"], o), "--output-dir", str(w["yaml_bad"])),
     2, ["--output-dir (OUTPUT_DIR) {yaml_bad} is a file, not a folder"]),
    ("duplicate yaml key", "train", lambda w, o: replace_flag(base_args(w["root"], o), "--config-file", str(w["yaml_dup"])),
     1, ["Config file {yaml_dup} (given by --config-file): 'LR' is given twice, at line 2 and at line 4"]),
]
CASES += EARLY_CASES


@pytest.mark.parametrize("case", EARLY_CASES, ids=[c[0] for c in EARLY_CASES])
def test_bad_settings_are_refused_before_anything_is_claimed_or_loaded(case, world, tmp_path, capsys):
    _, _, build, code, _ = case
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(SystemExit) as e:
        run_cli(train_main, build(world, out))
    printed = capsys.readouterr()
    assert e.value.code == code and list(out.iterdir()) == []  # no lock, no log
    assert "Reading split" not in printed.out and "Loading CLIP" not in printed.out


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_error(case, world, tmp_path, capsys):
    _, command, build, code, needles = case
    out = tmp_path / "out"
    out.mkdir()
    main = train_main if command == "train" else TOOLS[command].main
    with pytest.raises(SystemExit) as e:
        run_cli(main, build(world, out))
    printed = capsys.readouterr()
    text = printed.out + printed.err
    assert e.value.code == code, text[-2000:]
    assert "Traceback" not in text
    assert "error: " in printed.err
    for needle in needles:
        assert needle.format(o=out, **world) in text, (needle, printed.err)


def test_there_are_at_least_25_cases():
    assert len(CASES) >= 25


def test_a_locked_folder_is_one_clear_error(world, tmp_path, capsys):
    out = tmp_path / "run"
    with RunFolder(out):
        with pytest.raises(SystemExit) as e:
            run_cli(train_main, base_args(world["root"], out))
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.startswith(f"error: Another run is writing to {out}: PID {os.getpid()}")
    assert "Traceback" not in err


def test_debug_shows_the_traceback(world, tmp_path):
    args = base_args(world["root"], tmp_path / "o") + ["OPTIM.LRR", "1"]
    with pytest.raises(KeyError, match="OPTIM.LRR"):
        run_cli(train_main, [*args, "--debug"])


def test_real_commands_end_the_same_way(world, tmp_path):
    """The entry points themselves (python train.py / tools/*.py) go through run_cli."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    train = subprocess.run([sys.executable, "train.py", *base_args(world["root"], tmp_path / "o"), "OPTIM.LRR", "1"],
                           cwd=REPO, capture_output=True, text=True, env=env)
    assert train.returncode == 1 and train.stderr.startswith("error: Unknown config key 'OPTIM.LRR'")
    assert "Traceback" not in train.stderr
    parse = subprocess.run([sys.executable, "tools/parse_test_res.py", str(tmp_path / "nope")], cwd=REPO,
                           capture_output=True, text=True, env=env)
    assert parse.returncode == 1 and parse.stderr == f"error: {tmp_path / 'nope'} is not a folder\n"


def test_every_command_ends_through_run_cli():
    for path in sorted((REPO / "tools").glob("*.py")):
        text = path.read_text()
        if '__name__ == "__main__"' in text:
            assert 'if __name__ == "__main__":\n    run_cli(main)\n' in text, path.name
    assert 'if __name__ == "__main__":\n    run_cli(main)\n' in (REPO / "train.py").read_text()


def test_an_unreadable_image_in_a_loader_worker_is_one_clear_error(world, tmp_path, capsys):
    """The worker's error reaches the main process as one block naming the image, not as the
    worker's whole traceback after the `error:` line."""
    root = tmp_path / "data"
    shutil.copytree(world["root"] / "caltech-101", root / "caltech-101")
    for path in (root / "caltech-101" / "101_ObjectCategories").rglob("*.jpg"):
        path.write_bytes(path.read_bytes()[:40])  # truncated: opens, fails to decode
    with pytest.raises(SystemExit) as e:
        run_cli(train_main, base_args(root, tmp_path / "out") + ["DATALOADER.NUM_WORKERS", "1"])
    err = capsys.readouterr().err
    assert e.value.code == 1 and "Traceback" not in err
    assert err.startswith(f"error: Cannot read image {root}/caltech-101/101_ObjectCategories/")
    assert "Replace the file or remove it from the split." in err
    assert err.rstrip().endswith("(raised in DataLoader worker process 0)")


def test_a_path_through_a_file_is_one_clear_error(world, tmp_path, capsys):
    """ENOTDIR: an output folder below a regular file."""
    blocker = tmp_path / "results"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(SystemExit) as e:
        run_cli(train_main, base_args(world["root"], blocker / "CoOp" / "seed1"))
    err = capsys.readouterr().err
    assert e.value.code == 1 and "Traceback" not in err
    assert err.startswith(f"error: cannot use {blocker}/CoOp/seed1: a part of that path is a file, not a folder")
