"""docs/EXTENDING.md runs as written. Its Python blocks are either excerpts of the file they name
(every line, in order, is that file's) or complete examples this test runs; each of its commands
is one that train.py, the scripts, the sweep and the comparison accept here: a train.py command
loads its trainer files and builds its config and trainer class, a script step prints its train.py
command (checked the same way), a sweep plans (--dry-run). They are not trained: the datasets
and CLIP weights they name are not on this machine. `~/KgCoOp`, `~/CoOp` and `~/ProGrad` are
stand-ins of ours (tests/data/forked_repo); ProGrad's recipe is then trained for an epoch on the
attribute world."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import trainers  # noqa: F401  (registers the built-in trainers first, as train.py does)
from engine.data.base import DATASET_REGISTRY
from engine.errors import UserError
from external import load_trainer_files
from tests.external_world import openai_format_clip, restored_process
from train import main, parse_args, setup_cfg
from engine.launch import trainer_class

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "EXTENDING.md"
FORKED = REPO / "tests" / "data" / "forked_repo"
BLOCK = re.compile(r"(?:<!-- (excerpt: (\S+)|runs) -->\n)?```(\w+)\n(.*?)```", re.S)


def blocks(lang: str) -> list[tuple[str | None, str | None, str]]:
    """(marker, excerpt file, text) of every code block in `lang`."""
    return [(m[1], m[2], m[4]) for m in BLOCK.finditer(GUIDE.read_text()) if m[3] == lang]


def code_lines(text: str) -> list[str]:
    """Stripped lines without comments, blank lines and `...` (a gap in an excerpt)."""
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in text.splitlines()]
    return [line for line in lines if line and line != "..."]


def test_every_python_block_is_an_excerpt_or_runs():
    python = blocks("python")
    assert len(python) >= 8 and all(marker is not None for marker, _, _ in python), \
        [text[:60] for marker, _, text in python if marker is None]


@pytest.mark.parametrize("file, text", [(f, t) for m, f, t in blocks("python") if f],
                         ids=lambda x: x if isinstance(x, str) and x.endswith(".py") else "")
def test_an_excerpt_is_the_files_code(file, text):
    source = iter(code_lines((REPO / file).read_text()))
    missing = [line for line in code_lines(text) if not any(line == s for s in source)]
    assert missing == [], f"not in {file} (in this order): {missing}"


@pytest.fixture()
def home(tmp_path, monkeypatch):
    """~ with the stand-in repositories the guide names: KgCoOp's and ProGrad's are
    tests/data/forked_repo; CoOp's holds a CoOp file and CoOp's keys."""
    home = tmp_path / "home"
    home.mkdir()
    for name in ("KgCoOp", "ProGrad"):
        (home / name).symlink_to(FORKED)
    coop = home / "CoOp" / "trainers"
    coop.mkdir(parents=True)
    shutil.copy(REPO / "examples" / "dassl_trainers" / "common.py", coop / "common.py")
    (coop / "coop.py").write_text((REPO / "examples" / "dassl_trainers" / "coop.py").read_text()
                                  .replace("DasslCoOp", "CoOp").replace("DASSLCOOP", "COOP"))
    (home / "CoOp" / "train.py").write_text(
        "from yacs.config import CfgNode as CN\n\n\ndef extend_cfg(cfg):\n    cfg.TRAINER.COOP = CN()\n"
        "    cfg.TRAINER.COOP.N_CTX = 16\n    cfg.TRAINER.COOP.CSC = False\n    cfg.TRAINER.COOP.CTX_INIT = ''\n"
        "    cfg.TRAINER.COOP.PREC = 'fp16'\n    cfg.TRAINER.COOP.CLASS_TOKEN_POSITION = 'end'\n")
    monkeypatch.setenv("HOME", str(home))
    return home


def run_examples(home: Path) -> None:
    for marker, _, text in blocks("python"):
        if marker != "runs":
            continue
        saved_as = re.match(r'"""(\w+\.py): ', text)
        if saved_as:  # a trainer file of the guide's: saved where its command finds it
            (home / saved_as[1]).write_text(text)
        else:
            exec(compile(text, str(GUIDE), "exec"), {"__name__": "guide_example"})


def commands() -> list[str]:
    """Every command of the guide's shell blocks, continuation lines joined, comments dropped."""
    out = []
    for _, _, text in blocks("bash"):
        for line in text.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def overlay(tmp_path: Path) -> Path:
    """The repository seen through links, with a configs/trainers/ of its own where the guide's
    `ln -s` lands."""
    root = tmp_path / "promptlab"
    (root / "configs" / "trainers").mkdir(parents=True)
    for entry in REPO.iterdir():
        if entry.name not in ("configs", ".git"):
            (root / entry.name).symlink_to(entry)
    (root / "configs" / "datasets").symlink_to(REPO / "configs" / "datasets")
    for method in (REPO / "configs" / "trainers").iterdir():
        (root / "configs" / "trainers" / method.name).symlink_to(method)
    return root


def accept_train(words: list[str], env: dict[str, str]) -> None:
    with restored_process(), pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        args = parse_args(words)
        load_trainer_files(args.trainer_file)
        cfg = setup_cfg(args)
        assert trainer_class(cfg) is not None and cfg.DATASET.NAME in DATASET_REGISTRY
        for path in (args.config_file, args.dataset_config_file):
            assert Path(path).is_file(), path


def test_every_command_is_accepted(home, tmp_path, monkeypatch):
    import sweeps.command
    from comparison.command import main as compare_main

    run_examples(home)  # the guide's own files its commands name
    root = overlay(tmp_path)
    monkeypatch.chdir(root)
    monkeypatch.setattr(sweeps.command, "REPO", root)
    seen = set()
    for line in commands():
        words = shlex.split(os.path.expandvars(line))
        env = {}
        while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
            key, value = words.pop(0).split("=", 1)
            env[key] = ":".join(os.path.expanduser(v) for v in value.split(":"))
        words = [os.path.expanduser(w) for w in words]
        if words[0] == "export":
            key, _ = words[1].split("=", 1)
            monkeypatch.setenv(key, str(tmp_path / "DATA"))
        elif words[:2] == ["ln", "-s"]:
            Path(words[3]).symlink_to(words[2])
        elif words[:2] == ["python", "train.py"]:
            accept_train(words[2:], env)
        elif words[:2] == ["bash", "scripts/run.sh"]:
            printed = subprocess.run(words, env={**os.environ, **env, "PRINT_RUNS": "1"}, capture_output=True,
                                     text=True, check=True).stdout
            runs = [shlex.split(x)[1:] for x in printed.splitlines() if x.startswith("train.py ")]
            assert runs, printed
            for run in runs:
                accept_train(run, env)
        elif words[:2] == ["python", "tools/sweep.py"]:
            with restored_process():
                assert sweeps.command.main([*words[2:], "--dry-run"]) == 0
        elif words[:2] == ["python", "tools/compare.py"]:
            Path(words[2]).mkdir(exist_ok=True)
            with pytest.raises(UserError, match=r"^No base2new results under"):  # no runs here
                compare_main(words[2:])
        elif words[:3] == ["python", "-m", "pytest"]:
            assert (REPO / words[3]).is_file()
        else:
            raise AssertionError(f"a command of the guide this test does not know: {line}")
        seen.add(" ".join(words[:2]))
    assert {"python train.py", "bash scripts/run.sh", "python tools/sweep.py", "ln -s"} <= seen


def test_prograds_recipe_trains(home, tmp_path):
    """The guide's prograd_step.py, on the stand-in ProGrad: one epoch on the attribute world."""
    run_examples(home)
    root = tmp_path / "DATA"
    root.mkdir()
    (root / "dataset.yaml").write_text(yaml.safe_dump({"DATASET": {"NAME": "AttrTinyTextureShape"}}))
    out = tmp_path / "out"
    with restored_process():
        main(["--trainer-file", str(home / "ProGrad" / "trainers" / "prograd.py"), "--trainer-file",
              str(home / "prograd_step.py"), "--trainer", "ProGradStep", "--root", str(root), "--seed", "1",
              "--dataset-config-file", str(root / "dataset.yaml"), "--config-file",
              "configs/trainers/ZeroshotCLIP/tiny.yaml", "--output-dir", str(out), "MODEL.BACKBONE.NAME",
              str(openai_format_clip(root / "openai_format.pt")), "DATASET.NUM_SHOTS", "1", "OPTIM.NAME", "sgd",
              "OPTIM.LR_SCHEDULER", "cosine", "OPTIM.MAX_EPOCH", "1", "DATALOADER.NUM_WORKERS", "0",
              "DATASET.SUBSAMPLE_CLASSES", "base"])
    code = json.loads((out / "results.json").read_text())["manifest"]["trainer_code"]
    assert (code["class"], code["file"], code["clip"]) == ("ProGradStep", str(home / "prograd_step.py"), str(FORKED / "clip"))
    assert {str(FORKED / "trainers" / "prograd.py"), str(FORKED / "clip" / "model.py")} <= set(code["sha256"])  # its base's
