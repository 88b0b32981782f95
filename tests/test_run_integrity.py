"""Run integrity (docs/RELIABILITY.md): a result is the run it claims to be, one writer per output
folder, checkpoints that cannot run code, damage that is survivable and explained."""
import errno
import hashlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import engine.io
from engine.checkpoint import CheckpointDamagedError, load_checkpoint, save_tensors
from engine.cli import run_cli
from engine.errors import (
    CheckpointError, ConfigError, DataError, RunLockedError, RunMismatchError,
)
from engine.locks import FileLock
from engine.launch import run_state
from engine.run_folder import RunFolder
from tests.minidata import CLASSES, COUNTS, make_caltech_like
from tools.parse_test_res import main as parse_test_res_main
from train import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """The Caltech101-layout mini dataset, and the same images as DescribableTextures."""
    root = make_caltech_like(tmp_path_factory.mktemp("data"))
    shutil.copytree(root / "caltech-101" / "101_ObjectCategories", root / "dtd" / "images")
    split = (root / "caltech-101" / "split_zhou_Caltech101.json").read_text()
    (root / "dtd" / "split_zhou_DescribableTextures.json").write_text(split)
    return root


def argv(root, out, *extra, seed=1, epochs=1, dataset="caltech101", trainer="CoOp"):
    return [
        "--root", str(root), "--seed", str(seed), "--trainer", trainer,
        "--dataset-config-file", f"configs/datasets/{dataset}.yaml",
        "--config-file", "configs/trainers/CoOp/vit_b16_ep50.yaml", "--output-dir", str(out), *extra,
        "MODEL.BACKBONE.NAME", "tiny-test", "MODEL.BACKBONE.PRETRAINED", "False",
        "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0",
        "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "DATALOADER.TEST.BATCH_SIZE", "8",
        "OPTIM.MAX_EPOCH", str(epochs), "TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.PREC", "fp32",
    ]


def ctx(out, epoch):
    return load_checkpoint(Path(out) / "prompt_learner" / f"model.pth.tar-{epoch}")["state_dict"]["ctx"]


def logs(out):
    return sorted(p.name for p in Path(out).glob("log.txt*"))


@pytest.fixture(scope="module")
def finished(data_root, tmp_path_factory):
    """A finished 1-epoch CoOp run (seed 1, Caltech101), copied by tests that change it."""
    out = tmp_path_factory.mktemp("finished") / "run"
    main(argv(data_root, out))
    return out


def copy_of(run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(run, target)
    return target


# ---- identity -------------------------------------------------------------------------------
def test_manifest_is_in_results_and_every_checkpoint(finished):
    results = json.loads((finished / "results.json").read_text())
    manifest = results["manifest"]
    assert {k: manifest[k] for k in ("trainer", "dataset", "seed", "num_shots", "subsample", "backbone", "mode")} == {
        "trainer": "CoOp", "dataset": "Caltech101", "seed": 1, "num_shots": -1, "subsample": "all",
        "backbone": "tiny-test", "mode": "train"}
    assert manifest["weights"] == "random-init:tiny-test"
    assert "OUTPUT_DIR" not in manifest["config"] and "NUM_WORKERS" not in manifest["config"]["DATALOADER"]
    assert manifest["config"]["OPTIM"]["MAX_EPOCH"] == 1 and manifest["code"]
    assert load_checkpoint(finished / "prompt_learner" / "model.pth.tar-1")["meta"]["manifest"] == manifest


@pytest.mark.parametrize("change, field", [
    ({"seed": 2}, "seed: 1 (recorded) vs 2 (this run)"),
    ({"dataset": "dtd"}, "dataset: 'Caltech101' (recorded) vs 'DescribableTextures' (this run)"),
])
def test_a_folder_holding_another_run_is_refused_with_the_fields_that_differ(data_root, finished, tmp_path, change,
                                                                            field):
    out = copy_of(finished, tmp_path)
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(RunMismatchError) as e:
        main(argv(data_root, out, **change))
    message = str(e.value)
    assert field in message and "--output-dir" in message and "--start-over" in message
    after = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # refused before anything was written, no new log either


def test_resume_from_a_checkpoint_of_another_run_is_refused(data_root, finished, tmp_path):
    """No results.json, only another seed's checkpoints (a run still training, or killed)."""
    out = copy_of(finished, tmp_path)
    (out / "results.json").unlink()
    with pytest.raises(RunMismatchError, match=r"prompt_learner/model.pth.tar-1.*\n- seed: 1 \(recorded\) vs 3"):
        main(argv(data_root, out, seed=3))


def test_start_over_moves_the_old_run_aside(data_root, finished, tmp_path):
    out = copy_of(finished, tmp_path)
    old_results = (out / "results.json").read_bytes()
    main(argv(data_root, out, "--start-over", seed=2))
    (moved,) = [p for p in tmp_path.iterdir() if p.name.startswith(".run.moved-")]
    assert (moved / "results.json").read_bytes() == old_results and (moved / "prompt_learner").is_dir()
    assert json.loads((out / "results.json").read_text())["seed"] == 2
    assert f"--start-over: the earlier run in {out} was moved to {moved}" in (out / "log.txt").read_text()


def test_skip_finished_needs_the_same_manifest(data_root, finished, tmp_path, capsys):
    out = copy_of(finished, tmp_path)
    main(argv(data_root, out, "--skip-finished", "TRAIN.PRINT_FREQ", "3"))  # a key that changes nothing
    assert f"The results exist at {out} (so skip this job)" in capsys.readouterr().out
    assert logs(out) == ["log.txt"]  # nothing ran
    with pytest.raises(RunMismatchError, match=r"config.OPTIM.MAX_EPOCH: 1 \(recorded\) vs 2 \(this run\)"):
        main(argv(data_root, out, "--skip-finished", epochs=2))


def without(manifest: dict, *fields: str) -> dict:
    return {k: v for k, v in manifest.items() if k not in fields}


def config_without_seed(manifest: dict) -> dict:
    config = {k: v for k, v in manifest["config"].items() if k != "SEED"}
    return {**manifest, "config": config}


@pytest.mark.parametrize("damage, named", [
    (lambda m: "CoOp seed 1", "it is a str, not an object"),
    (lambda m: without(m, "seed", "weights"), "it lacks seed, weights"),
    (lambda m: without(m, *m), "it lacks trainer, dataset, seed"),  # a results.json of no manifest at all
    (lambda m: {**m, "seed": "1"}, "seed is a str, expected int or NoneType"),
    (config_without_seed, "its config does not match its config_sha256"),
], ids=["string", "fields deleted", "empty", "wrong type", "config key deleted"])
def test_a_damaged_manifest_is_never_skipped_resumed_or_compared(data_root, finished, tmp_path, capsys, damage,
                                                                 named):
    """Issue 20, case 5: a results.json whose manifest is not whole matches no run: --skip-finished
    refuses it naming what is wrong (it used to skip it as finished), the sweep calls it a
    mismatch, the comparison tools name the damaged file, and a checkpoint with such a manifest is
    never resumed."""
    out = copy_of(finished, tmp_path)
    results = json.loads((out / "results.json").read_text())
    results["manifest"] = damage(results["manifest"])
    (out / "results.json").write_text(json.dumps(results))
    with pytest.raises(RunMismatchError, match=rf"results.json, which cannot be shown to be this run, as its manifest "
                                               rf"is damaged or incomplete:\n- manifest: {re.escape(named)}"):
        main(argv(data_root, out, "--skip-finished"))
    assert logs(out) == ["log.txt"]  # neither skipped as finished nor run
    state, detail = run_state(argv(data_root, out))[1:]
    assert state == "mismatch" and f"manifest: {named}" in detail
    with pytest.raises(DataError, match=rf"{out}/results.json cannot be shown to be the run it reports: its manifest "
                                        rf"{re.escape(named)}"):
        parse_test_res_main([str(tmp_path)])

    (out / "results.json").unlink()
    ckpt_path = out / "prompt_learner" / "model.pth.tar-1"
    ckpt = load_checkpoint(ckpt_path)
    ckpt["meta"]["manifest"] = damage(ckpt["meta"]["manifest"])
    save_tensors(ckpt, ckpt_path)
    with pytest.raises(RunMismatchError, match=rf"model.pth.tar-1, which cannot be shown to be this run.*\n"
                                               rf"- manifest: {re.escape(named)}"):
        main(argv(data_root, out, epochs=2))
    assert logs(out) == ["log.txt"]


def test_an_unseeded_run_says_so_and_leaves_no_seeded_cache(data_root, tmp_path):
    """--seed -1 (CoOp's "no fixed seed"): the manifest records seed null, and no
    shot_K-seed_-1.json is read or written (its picks would be fixed while the weights differ)."""
    out = tmp_path / "run"
    main(argv(data_root, out, "DATASET.NUM_SHOTS", "2", seed=-1))
    results = json.loads((out / "results.json").read_text())
    assert results["manifest"]["seed"] is None and results["seed"] == -1
    assert not list(data_root.glob("caltech-101/split_fewshot/*seed_-1*"))


def test_evaluating_a_model_of_another_trainer_is_refused(data_root, finished, tmp_path):
    with pytest.raises(RunMismatchError, match=r"trainer: 'CoOp' \(recorded\) vs 'CoCoOp' \(this run\)"):
        main(argv(data_root, tmp_path / "eval", "--eval-only", "--model-dir", str(finished), trainer="CoCoOp"))


def test_evaluation_records_the_checkpoint_it_loaded(data_root, finished, tmp_path):
    out = tmp_path / "eval"
    main(argv(data_root, out, "--eval-only", "--model-dir", str(finished), "--load-epoch", "1"))
    model = json.loads((out / "results.json").read_text())["manifest"]["model"]
    ckpt = finished / "prompt_learner" / "model.pth.tar-1"
    import hashlib

    assert model == {"epoch": 1, "files": {"prompt_learner": {
        "file": "model.pth.tar-1", "sha256": hashlib.sha256(ckpt.read_bytes()).hexdigest()}}}


# ---- one writer ---------------------------------------------------------------------------
def test_a_second_run_into_a_locked_folder_stops_naming_the_holder(data_root, tmp_path):
    out = tmp_path / "run"
    with RunFolder(out):
        with pytest.raises(RunLockedError) as e:
            main(argv(data_root, out))
    message = str(e.value)
    assert str(out) in message and f"PID {os.getpid()} on host {socket.gethostname()}, started " in message
    assert logs(out) == []


def test_a_lock_left_by_a_killed_run_is_stale_and_taken_over(data_root, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record = {"pid": dead.pid, "host": socket.gethostname(), "started": "2026-01-01 00:00:00 +0000"}
    (out / ".lock").write_text(json.dumps(record))
    main(argv(data_root, out))
    assert (f"{out / '.lock'} was left by PID {dead.pid} on host {socket.gethostname()}, started 2026-01-01 "
            "00:00:00 +0000, which is no longer running") in (out / "log.txt").read_text()
    assert FileLock(out / ".lock").holder() is None  # released at the end


def test_log_names_are_unique_within_one_second(tmp_path):
    from engine.logging import new_log_path

    names = [new_log_path(tmp_path).name for _ in range(4)]
    assert len(set(names)) == 4 and names[0] == "log.txt"
    assert sorted(names[1:]) == names[1:]  # parse_test_res reads them in name order


# ---- safe loading ---------------------------------------------------------------------------
class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def craft(path, marker):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"ctx": torch.zeros(4, 48)}, "epoch": 1, "x": Payload(marker)}, path)


@pytest.mark.parametrize("where", ["output", "model-dir", "init-weights"])
def test_a_crafted_pickle_checkpoint_is_refused_without_running_it(data_root, tmp_path, where):
    marker = tmp_path / "PWNED"
    crafted = tmp_path / "evil" / "prompt_learner" / "model.pth.tar-1"
    craft(crafted, marker)
    (crafted.parent / "checkpoint").write_text("model.pth.tar-1\n")
    run = {"output": argv(data_root, tmp_path / "evil"),
           "model-dir": argv(data_root, tmp_path / "e", "--eval-only", "--model-dir", str(tmp_path / "evil")),
           "init-weights": argv(data_root, tmp_path / "i") + ["MODEL.INIT_WEIGHTS", str(crafted)]}[where]
    with pytest.raises(CheckpointError, match=r"Refusing to load .*model.pth.tar-1: it holds Python objects "
                                              r"\(posix.system\)"):
        main(run)
    assert not marker.exists()


def test_a_pointer_leaving_its_folder_is_refused(tmp_path):
    from engine.checkpoint import latest_checkpoint

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "checkpoint").write_text("../../etc/passwd\n")
    with pytest.raises(CheckpointError, match=r"names '../../etc/passwd', which is not a file in its own folder"):
        latest_checkpoint(tmp_path / "m")


def test_checkpoints_of_the_previous_version_still_load(tmp_path):
    """Earlier checkpoints held NumPy's RNG state as an array and torch's version object."""
    import random

    path = tmp_path / "model.pth.tar-3"
    torch.save({"state_dict": {"ctx": torch.ones(2)}, "epoch": 3, "rng": {
        "python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
        "meta": {"torch": torch.__version__}}, path)
    from engine.utils import set_rng_state

    ckpt = load_checkpoint(path)
    set_rng_state(ckpt["rng"])
    assert torch.equal(ckpt["state_dict"]["ctx"], torch.ones(2)) and ckpt["epoch"] == 3


# ---- damage -------------------------------------------------------------------------------------
def test_a_truncated_checkpoint_is_named(tmp_path, finished):
    path = tmp_path / "model.pth.tar-1"
    data = (finished / "prompt_learner" / "model.pth.tar-1").read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointDamagedError, match=rf"Checkpoint {path} is damaged \(truncated or corrupt"):
        load_checkpoint(path)


def crash_after(epoch_index):
    from engine.trainer import TrainerX

    original = TrainerX.after_epoch

    def after_epoch(self):
        original(self)
        if self.epoch == epoch_index:
            raise KeyboardInterrupt

    return after_epoch


def straight_and_interrupted(data_root, tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A 3-epoch run, and the same run stopped after its second epoch's checkpoint."""
    from engine.trainer import TrainerX

    straight = tmp_path / "straight"
    main(argv(data_root, straight, epochs=3))
    out = tmp_path / "run"
    original = TrainerX.after_epoch
    monkeypatch.setattr(TrainerX, "after_epoch", crash_after(1))
    with pytest.raises(KeyboardInterrupt):
        main(argv(data_root, out, epochs=3))
    monkeypatch.setattr(TrainerX, "after_epoch", original)
    return straight, out


def test_corrupt_newest_checkpoint_falls_back_a_epoch_to_the_same_weights(data_root, tmp_path, monkeypatch):
    straight, out = straight_and_interrupted(data_root, tmp_path, monkeypatch)
    newest = out / "prompt_learner" / "model.pth.tar-2"
    newest.write_bytes(newest.read_bytes()[:100])
    main(argv(data_root, out, epochs=3))
    resumed = (out / logs(out)[-1]).read_text()
    assert f"Warning: Checkpoint {newest} is damaged" in resumed and "Previous epoch: 1" in resumed
    assert torch.equal(ctx(straight, 3), ctx(out, 3))
    assert sorted(p.name for p in (out / "prompt_learner").iterdir()) == [  # the two newest are kept
        "checkpoint", "model.pth.tar-2", "model.pth.tar-2.sha256", "model.pth.tar-3", "model.pth.tar-3.sha256"]


def flip_one_byte(path: Path) -> None:
    """One bit of the tensor data changed: the zip stays readable (torch does not check its CRCs)."""
    data = bytearray(path.read_bytes())
    ckpt = torch.load(io.BytesIO(bytes(data)), weights_only=True)
    ctx_bytes = ckpt["state_dict"]["ctx"].numpy().tobytes()
    at = bytes(data).index(ctx_bytes)
    data[at + 2] ^= 0x40
    path.write_bytes(bytes(data))
    flipped = torch.load(path, weights_only=True)["state_dict"]["ctx"]  # loads without complaint
    assert not torch.equal(flipped, ckpt["state_dict"]["ctx"])


def test_a_flipped_byte_in_the_newest_checkpoint_falls_back_a_epoch(data_root, tmp_path, monkeypatch):
    """Issue 20, case 4: a changed byte inside the tensor data is found by the digest recorded at
    save time; resume falls back to the previous epoch and ends on the uninterrupted weights."""
    straight, out = straight_and_interrupted(data_root, tmp_path, monkeypatch)
    newest = out / "prompt_learner" / "model.pth.tar-2"
    assert (out / "prompt_learner" / "model.pth.tar-2.sha256").read_text() == \
        f"{hashlib.sha256(newest.read_bytes()).hexdigest()}  model.pth.tar-2\n"
    flip_one_byte(newest)
    main(argv(data_root, out, epochs=3))
    resumed = (out / logs(out)[-1]).read_text()
    assert f"Warning: Checkpoint {newest} is damaged: its content does not match the SHA-256 recorded" in resumed
    assert "Previous epoch: 1" in resumed and torch.equal(ctx(straight, 3), ctx(out, 3))


def test_evaluating_a_checkpoint_with_a_flipped_byte_is_refused(data_root, finished, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(finished, model)
    flip_one_byte(model / "prompt_learner" / "model.pth.tar-1")
    with pytest.raises(CheckpointError, match=r"model\.pth\.tar-1 is damaged: its content does not match"):
        main(argv(data_root, tmp_path / "eval", "--eval-only", "--model-dir", str(model)))
    assert not (tmp_path / "eval" / "results.json").exists()


KILL_DURING_SAVE = """
import os, signal, sys
sys.path.insert(0, {repo!r})
import engine.checkpoint as ck
real = ck.atomic_write_bytes
def dying(path, data):
    if str(path).endswith("model.pth.tar-2"):
        tmp = path.parent / ("." + path.name + ".abc123.tmp")
        tmp.write_bytes(data[: len(data) // 3])
        os.kill(os.getpid(), signal.SIGKILL)
    real(path, data)
ck.atomic_write_bytes = dying
from tools.parse_test_res import main as parse_test_res_main
from train import main
main({argv!r})
"""


def test_a_run_killed_during_a_checkpoint_write_resumes_to_the_same_weights(data_root, tmp_path):
    straight = tmp_path / "straight"
    main(argv(data_root, straight, epochs=3))
    out = tmp_path / "run"
    script = KILL_DURING_SAVE.format(repo=str(REPO), argv=argv(data_root, out, epochs=3))
    killed = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL
    assert (out / "prompt_learner" / ".model.pth.tar-2.abc123.tmp").is_file()
    main(argv(data_root, out, epochs=3))
    resumed = (out / logs(out)[-1]).read_text()
    assert "Removed 1 temp file(s) of interrupted saves: prompt_learner/.model.pth.tar-2.abc123.tmp" in resumed
    assert "Previous epoch: 1" in resumed and not list(out.rglob("*.tmp"))
    assert torch.equal(ctx(straight, 3), ctx(out, 3))


@pytest.mark.parametrize("code, what, fix", [
    (errno.ENOSPC, "no space left on the device", "Free space in {folder}"),
    (errno.EFBIG, "the file is larger than this file system or process allows", "raise the limit (`ulimit -f`)"),
], ids=["ENOSPC", "EFBIG"])
def test_disk_full_during_a_checkpoint_is_one_clear_error(data_root, tmp_path, monkeypatch, capsys, code, what, fix):
    """A full disk, or a file over the file system's (FAT32: 4 GB) or `ulimit -f`'s limit."""
    import engine.checkpoint as ck

    def full(path, data):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(ck, "atomic_write_bytes", full)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        run_cli(main, argv(data_root, out))
    err = capsys.readouterr().err
    assert e.value.code == 1 and "Traceback" not in err
    assert err.startswith(f"error: cannot write {out}/prompt_learner/model.pth.tar-1: {what}")
    assert fix.format(folder=out / "prompt_learner") in err
    assert not list((out / "prompt_learner").glob("model.pth.tar-*"))


def test_a_log_that_cannot_be_written_stops_with_one_warning(tmp_path, capsys):
    from engine.logging import Tee

    class Full:
        name = str(tmp_path / "log.txt")

        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            pass

    tee = Tee(sys.stdout, Full())
    tee.write("one\n")
    tee.write("two\n")
    out = capsys.readouterr().out
    assert out == f"one\n\nwarning: cannot write {tmp_path / 'log.txt'} ([Errno 28] No space left on device); " \
                  "the log stops here, the console goes on\ntwo\n"


def test_invalid_split_json_names_the_file_and_line(data_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(data_root / "caltech-101", root / "caltech-101")
    split = root / "caltech-101" / "split_zhou_Caltech101.json"
    split.write_text('{"train": [\n  ["a.jpg", 0, "a"],\n  oops\n]}')
    with pytest.raises(DataError, match=rf"{split} is not valid JSON: Expecting value at line 3, column 3\. "
                                        "It should be CoOp's split file: delete it and fetch it again"):
        main(argv(root, tmp_path / "run"))


def test_invalid_fewshot_cache_names_the_file_and_says_it_regenerates(data_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(data_root / "caltech-101", root / "caltech-101")
    cache = root / "caltech-101" / "split_fewshot" / "shot_2-seed_1.json"
    cache.parent.mkdir()
    cache.write_text('{"train": [')
    with pytest.raises(DataError, match=rf"{cache} is not valid JSON: .* at line 1, column 12\. It is a cache: "
                                        "delete it and rerun, and it is regenerated"):
        main(argv(root, tmp_path / "run", "DATASET.NUM_SHOTS", "2"))
    cache.unlink()
    main(argv(root, tmp_path / "run", "DATASET.NUM_SHOTS", "2"))
    assert cache.is_file()


def test_a_fewshot_cache_of_another_split_is_refused(data_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(data_root / "caltech-101", root / "caltech-101")
    cache = root / "caltech-101" / "split_fewshot" / "shot_1-seed_1.json"
    cache.parent.mkdir()
    cache.write_text(json.dumps({"train": [["elsewhere/x.jpg", 0, "red_thing"]], "val": []}))
    with pytest.raises(DataError, match=r"lists 1 images that are not in the current split .*elsewhere/x.jpg"):
        main(argv(root, tmp_path / "run", "DATASET.NUM_SHOTS", "1"))


# ---- settings ---------------------------------------------------------------------------------
def test_more_shots_than_a_class_has_warns_naming_the_classes(data_root, tmp_path):
    out = tmp_path / "run"
    main(argv(data_root, out, "DATASET.NUM_SHOTS", "1000"))
    log = (out / "log.txt").read_text()
    names = ", ".join(f"'{c}' ({COUNTS['train']})" for c in CLASSES)
    assert (f"Warning: DATASET.NUM_SHOTS 1000 is more than 5 of 5 classes have in train: {names}. Those classes use "
            "all their images (Dassl's rule)") in log


def test_all_images_is_said_in_the_log(finished):
    assert ("DATASET.NUM_SHOTS -1: every training image is used (Dassl's convention for NUM_SHOTS < 1)"
            in (finished / "log.txt").read_text())


def test_zero_epochs_with_learnable_weights_is_an_error(data_root, tmp_path):
    with pytest.raises(ConfigError, match=r"OPTIM.MAX_EPOCH 0: CoOp has learnable weights .* Set OPTIM.MAX_EPOCH to 1"):
        main(argv(data_root, tmp_path / "run", epochs=0))
    assert not (tmp_path / "run" / "results.json").exists()
    main(argv(data_root, tmp_path / "zs", "--eval-only", trainer="ZeroshotCLIP", epochs=0))  # nothing to train: fine


def test_sweep_skips_only_steps_whose_runs_match(data_root, tmp_path, monkeypatch):
    """tools/sweep's skip rule predicts each run's manifest from the scripts' own command."""
    from engine.launch import run_state

    out = tmp_path / "run"
    main(argv(data_root, out))
    assert run_state(argv(data_root, out))[1] == "finished"
    state, detail = run_state(argv(data_root, out, epochs=2))[1:]
    assert state == "mismatch" and "config.OPTIM.MAX_EPOCH: 1 (recorded) vs 2 (this run)" in detail
    assert run_state(argv(data_root, tmp_path / "none"))[1] == "new"
    with RunFolder(out):
        assert run_state(argv(data_root, out))[1] == "running"


def test_remove_interrupted_saves_only_touches_atomic_temp_files(tmp_path):
    (tmp_path / "a").mkdir()
    keep = [tmp_path / "notes.tmp", tmp_path / ".hidden", tmp_path / "a" / "model.pth.tar-1"]
    gone = [tmp_path / ".results.json.x1y2.tmp", tmp_path / "a" / ".model.pth.tar-2.q9.tmp"]
    for p in keep + gone:
        p.write_text("x")
    assert sorted(engine.io.remove_interrupted_saves(tmp_path)) == sorted(gone)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in gone)
