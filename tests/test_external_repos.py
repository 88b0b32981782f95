"""Trainer files as published repositories ship them (external/): a file's class runs under the name
it shares with a built-in trainer, and the run's log and manifest name the file; a repository's own
clip package is what its files import, on promptlab's weights; its config keys leave the built-in
trainers' alone; and what its files assume of their own world ends in one error naming the line.

The repository is tests/data/forked_repo, a stand-in of ours for MaPLe's, PromptSRC's and MMRL's
(a forked clip with design details and a build_model_X), KgCoOp's (a train.py that rebuilds
TRAINER.COOP, a template table by dataset name) and ProGrad's (a forked Dassl's method)."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import trainers  # noqa: F401  (registers the built-in trainers first, as train.py does)
from backbone import load_clip
from engine.cli import run_cli
from engine.errors import BackboneError, ConfigError, RunMismatchError
from engine.registry import TRAINER_REGISTRY
from external import load_trainer_files, loader
from tests.external_world import openai_format_clip, restored_process
from train import main, parse_args, setup_cfg
from trainers.coop import CoOpCLIP, PromptLearner

REPO = Path(__file__).resolve().parents[1]
FORKED = REPO / "tests" / "data" / "forked_repo"
EXAMPLES = REPO / "examples" / "dassl_trainers"
PLAIN = "configs/trainers/ZeroshotCLIP/tiny.yaml"  # the attribute world's input and backbone, no trainer keys
FAST = ["DATASET.NUM_SHOTS", "1", "OPTIM.NAME", "sgd", "OPTIM.LR_SCHEDULER", "cosine", "OPTIM.MAX_EPOCH", "1", "OPTIM.WARMUP_EPOCH", "-1", "OPTIM.LR", "0.05",
        "DATALOADER.NUM_WORKERS", "0", "DATASET.SUBSAMPLE_CLASSES", "base"]


@pytest.fixture(autouse=True)
def process():
    with restored_process():
        yield


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("DATA")
    (root / "dataset.yaml").write_text(yaml.safe_dump({"DATASET": {"NAME": "AttrTinyTextureShape"}}))
    return {"root": root, "weights": openai_format_clip(root / "openai_format.pt")}


def argv(world, trainer: str, out: Path, *extra: str, config: str = "configs/trainers/CoOp/tiny_ep10.yaml") -> list[str]:
    return ["--root", str(world["root"]), "--seed", "1", "--trainer", trainer, "--output-dir", str(out),
            "--dataset-config-file", str(world["root"] / "dataset.yaml"), "--config-file", config, *extra, *FAST]


def results(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())


def checkpoint_ctx(run: Path) -> torch.Tensor:
    return torch.load(run / "prompt_learner" / "model.pth.tar-1", weights_only=False)["state_dict"]["ctx"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy_of_coop(folder: Path, change: tuple[str, str] | None = None) -> Path:
    """examples/dassl_trainers' CoOp file (official CoOp's structure) as a copy of coop.py: class CoOp
    reading TRAINER.COOP, optionally with one line changed."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLES / "common.py", folder / "common.py")
    text = (EXAMPLES / "coop.py").read_text().replace("DasslCoOp", "CoOp").replace("DASSLCOOP", "COOP")
    if change is not None:
        assert text.count(change[0]) == 1
        text = text.replace(*change)
    (folder / "coop.py").write_text(text)
    return folder / "coop.py"


# ---- the file's class runs, and its run says so ----------------------------------------------------------
ONE_LINE = ("return self.logit_scale.exp() * image_features @ text_features.t()",
            "return 0.5 * self.logit_scale.exp() * image_features @ text_features.t()")


def test_a_copy_of_coop_with_one_changed_line_runs_its_own_code(world, tmp_path, capsys):
    """The built-in CoOp, then a copy of coop.py with one changed line under the same class name: the
    copy's numbers differ, and its folder's log and manifest name the file and its digest."""
    main(argv(world, "CoOp", tmp_path / "builtin"))
    builtin = results(tmp_path / "builtin")
    assert "trainer_code" not in builtin["manifest"]
    capsys.readouterr()
    changed = copy_of_coop(tmp_path / "mine", ONE_LINE)
    main(argv(world, "CoOp", tmp_path / "copy", "--trainer-file", str(changed)))
    printed = capsys.readouterr().out
    assert f"{changed}: its CoOp replaces promptlab's built-in trainer CoOp (trainers.coop) in this process" in printed
    mine = results(tmp_path / "copy")
    code = mine["manifest"]["trainer_code"]
    assert (code["class"], code["file"], code["clip"]) == ("CoOp", str(changed), "promptlab")
    assert code["sha256"] == {str(changed): sha256(changed), str(changed.parent / "common.py"): sha256(changed.parent / "common.py")}
    log = (tmp_path / "copy" / "log.txt").read_text()
    assert f"Trainer CoOp: class CoOp of {changed} (sha256 {sha256(changed)[:12]})" in log
    assert "replaces promptlab's built-in trainer of that name" in log
    assert not torch.allclose(checkpoint_ctx(tmp_path / "copy"), checkpoint_ctx(tmp_path / "builtin"), atol=1e-4)


def test_an_unchanged_copy_of_coop_gives_the_builtins_logits(world, tmp_path):
    copy = copy_of_coop(tmp_path / "mine")
    load_trainer_files([str(copy)])
    cfg = setup_cfg(parse_args(argv(world, "CoOp", tmp_path / "out", "MODEL.BACKBONE.NAME", "tiny-attr")))
    theirs = TRAINER_REGISTRY.get("CoOp")(cfg)
    assert type(theirs).__module__.startswith(loader.PACKAGE)
    clip = load_clip("tiny-attr", precision="fp32")
    learner = PromptLearner(clip, theirs.dm.dataset.classnames, 16, "a photo of a", False, "end")
    ours = CoOpCLIP(clip, learner).eval()
    images = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(theirs.model.eval()(images), ours(images), atol=1e-5, rtol=0)


def test_a_changed_file_is_another_run(world, tmp_path):
    """Skip and resume compare the file's digest: after an edit the finished run is not skipped, and
    the folder is refused, naming the file, as is the built-in trainer in its place."""
    copy = copy_of_coop(tmp_path / "mine")
    out = tmp_path / "run"
    main(argv(world, "CoOp", out, "--trainer-file", str(copy)))
    finished = (out / "results.json").read_bytes()
    assert main(argv(world, "CoOp", out, "--trainer-file", str(copy), "--skip-finished")) == 0
    copy.write_text(copy.read_text().replace(*ONE_LINE))
    with pytest.raises(RunMismatchError, match=rf"trainer_code.sha256.{re.escape(str(copy))}: '[0-9a-f]{{64}}' "
                                               r"\(recorded\) vs '[0-9a-f]{64}' \(this run\)"):
        main(argv(world, "CoOp", out, "--trainer-file", str(copy), "--skip-finished"))
    assert (out / "results.json").read_bytes() == finished


def test_the_builtin_in_place_of_a_files_run_is_refused(world, tmp_path):
    copy = copy_of_coop(tmp_path / "mine")
    out = tmp_path / "run"
    main(argv(world, "CoOp", out, "--trainer-file", str(copy)))
    TRAINER_REGISTRY.register(replace=True)(trainers.coop.CoOp)  # as in a process without the file
    with pytest.raises(RunMismatchError, match=rf"trainer_code: class CoOp of {copy} \(recorded\) vs promptlab's "
                                               r"built-in CoOp \(this run\)"):
        main(argv(world, "CoOp", out, "--skip-finished"))


def test_a_class_that_a_named_file_only_imports_keeps_the_builtin(tmp_path, capsys):
    """CoOp's zsclip.py imports its coop.py: naming zsclip.py runs its ZeroshotCLIP2, not its CoOp."""
    copy = copy_of_coop(tmp_path / "repo")
    (tmp_path / "repo" / "zsclip.py").write_text(
        "from dassl.engine import TRAINER_REGISTRY, TrainerX\n\nfrom .coop import CoOp  # noqa: F401\n\n\n"
        "@TRAINER_REGISTRY.register()\nclass ZeroshotCLIP2(TrainerX):\n    pass\n")
    load_trainer_files([str(tmp_path / "repo" / "zsclip.py")])
    assert TRAINER_REGISTRY.get("CoOp") is trainers.coop.CoOp
    assert TRAINER_REGISTRY.get("ZeroshotCLIP2").__module__.startswith(loader.PACKAGE)
    assert (f"{copy}: CoOp is promptlab's built-in trainer (trainers.coop), which is kept: this file was imported "
            "by another one. Name it with --trainer-file to run its CoOp instead") in capsys.readouterr().out


def test_two_files_registering_one_name_is_an_error(tmp_path):
    for name in ("a", "b"):
        copy_of_coop(tmp_path / name)
    with pytest.raises(loader.ExternalCodeError, match=r"trainer CoOp is registered by two files, .*a/coop.py and "
                                                       r".*b/coop.py; pass only one of them"):
        load_trainer_files([str(tmp_path / "a" / "coop.py"), str(tmp_path / "b" / "coop.py")])


# ---- a repository's own clip package ----------------------------------------------------------------------
def fork_module(name: str):
    return sys.modules[TRAINER_REGISTRY.get(name).__module__]


def test_a_repositorys_files_import_its_own_clip_and_promptlab_serves_the_weights(world):
    load_trainer_files([str(FORKED / "trainers")])
    for trainer in ("CoOp", "KgCoOp", "RepTok", "ProGrad"):
        common = sys.modules[fork_module(trainer).__package__ + ".common"]
        assert common.clip.FORK == "forked_repo" and common.clip.__file__ == str(FORKED / "clip" / "clip.py")
    import clip

    assert clip.__file__ == str(REPO / "compat" / "clip" / "__init__.py")  # promptlab's layer everywhere else
    fork = sys.modules[fork_module("CoOp").__package__ + ".common"].clip
    path = fork._download(fork._MODELS[str(world["weights"])])  # the fork's own _download would go online
    assert path == str(world["weights"])
    with pytest.raises(BackboneError, match=r"MODEL.BACKBONE.NAME tiny-attr is promptlab's own architecture, which "
                                            rf"the model code of {FORKED / 'clip'} cannot build .* --trainer-file compat/clip"):
        fork._MODELS["tiny-attr"]


def test_a_forked_clip_with_design_details_gives_the_builtin_coops_logits(world, tmp_path):
    """The stand-in fork's CoOp (clip.build_model(state_dict, design_details)) on the OpenAI-format
    weights promptlab resolves: the built-in CoOp's logits, fp32, within 1e-5."""
    load_trainer_files([str(FORKED / "trainers" / "coop.py")])
    cfg = setup_cfg(parse_args(argv(world, "CoOp", tmp_path / "out", "MODEL.BACKBONE.NAME", str(world["weights"]))))
    theirs = TRAINER_REGISTRY.get("CoOp")(cfg)
    assert type(theirs.model.image_encoder).__module__ == "clip.model"  # the fork's model code
    clip_model = theirs.model.text_encoder.transformer
    assert clip_model is not None and theirs.model.prompt_learner.ctx.dtype == torch.float32
    clip = load_clip(str(world["weights"]), precision="fp32")
    learner = PromptLearner(clip, theirs.dm.dataset.classnames, 16, "a photo of a", False, "end")
    ours = CoOpCLIP(clip, learner).eval()
    images = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(theirs.model.eval()(images), ours(images), atol=1e-5, rtol=0)


def test_forked_trainers_run_to_results_json(world, tmp_path):
    out = tmp_path / "reptok"
    main(argv(world, "RepTok", out, "--trainer-file", str(FORKED / "trainers" / "reptok.py"), "--trainer-file",
              str(FORKED / "train.py"), "MODEL.BACKBONE.NAME", str(world["weights"]), "DATASET.PROMPT_TEMPLATE",
              "a photo of a {}.", config=PLAIN))
    code = results(out)["manifest"]["trainer_code"]
    assert code["clip"] == str(FORKED / "clip")
    assert {str(FORKED / "clip" / "model.py"), str(FORKED / "trainers" / "reptok.py")} <= set(code["sha256"])
    files = {f["path"]: f["kind"] for f in results(out)["external"]["files"]}
    assert files[str(FORKED / "clip" / "model.py")] == "clip" and files[str(FORKED / "train.py")] == "extend_cfg"
    assert "DATASET.PROMPT_TEMPLATE: CUSTOM_TEMPLATES['AttrTinyTextureShape'] = 'a photo of a {}.'" in \
        (out / "log.txt").read_text()


def test_promptlabs_clip_layer_can_be_named_for_a_repositorys_files(world, tmp_path):
    """--trainer-file compat/clip: the files run on promptlab's layer, which builds tiny-attr."""
    load_trainer_files([str(FORKED / "trainers" / "kgcoop.py"), str(REPO / "compat" / "clip")])
    common = sys.modules[fork_module("KgCoOp").__package__ + ".common"]
    assert common.clip.__name__ == "clip.clip" and common.clip.__file__ == str(REPO / "compat" / "clip" / "clip.py")


# ---- one error for what a file assumes of its own world ----------------------------------------------------
def line_of(path: Path, code: str) -> int:
    return [line.strip() for line in path.read_text().splitlines()].index(code) + 1


def run_as_command(args: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        run_cli(main, args)
    printed = capsys.readouterr()
    assert "Traceback" not in printed.err
    return e.value.code, printed.err


@pytest.mark.parametrize("trainer, file, code", [
    ("RepTok", "reptok.py", "template = CUSTOM_TEMPLATES[cfg.DATASET.NAME]"),
    ("KgCoOp", "kgcoop.py", 'words = CUSTOM_TEMPLATES[cfg.DATASET.NAME].split(" {}")[0] if cfg.TRAINER.COOP.CTX_INIT else ""'),
])
def test_a_template_table_without_the_dataset_is_one_error(world, tmp_path, capsys, trainer, file, code):
    path = FORKED / "trainers" / file
    line = line_of(path, code)
    status, err = run_as_command(argv(world, trainer, tmp_path / "out", "--trainer-file", str(path), "--trainer-file",
                                      str(FORKED / "train.py"), "MODEL.BACKBONE.NAME", str(world["weights"]),
                                      "TRAINER.COOP.CTX_INIT", "True", config=PLAIN), capsys)
    assert status == 1 and err.startswith("error: ")
    assert f"{path}, line {line}: `{code}` looks up a prompt template for the dataset 'AttrTinyTextureShape'" in err
    assert 'DATASET.PROMPT_TEMPLATE "a photo of a {}."' in err


def test_a_forked_dassl_method_is_one_error(world, tmp_path, capsys):
    path = FORKED / "trainers" / "prograd.py"
    status, err = run_as_command(argv(world, "ProGrad", tmp_path / "out", "--trainer-file", str(path),
                                      "MODEL.BACKBONE.NAME", str(world["weights"]), config=PLAIN), capsys)
    assert status == 1
    code = "self.prograd_backward_and_update(xe_loss, prior_loss, 1.0)"
    assert (f"error: {path}, line {line_of(path, code)}: `{code}` uses "
            "self.prograd_backward_and_update, which neither ProGrad nor Dassl's TrainerX defines: it comes from "
            "the repository's own fork of Dassl") in err


def test_a_forked_clip_name_on_promptlabs_layer_is_one_error(world, tmp_path, capsys):
    status, err = run_as_command(argv(world, "RepTok", tmp_path / "out", "--trainer-file", str(FORKED / "trainers"),
                                      "--trainer-file", str(FORKED / "train.py"), "--trainer-file",
                                      str(REPO / "compat" / "clip"), config=PLAIN), capsys)
    assert status == 1
    common = FORKED / "trainers" / "common.py"
    code = "return getattr(clip, builder)(state_dict or model.state_dict(), design_details)"
    assert (f"error: {common}, line {line_of(common, code)}: `return getattr(clip, builder)(state_dict or model.state_dict(), "
            "design_details)` uses clip.clip.build_model_RepTok, which promptlab's clip layer does not have: it comes "
            "from a forked clip package") in err


# ---- config keys, per trainer --------------------------------------------------------------------------------
def test_a_repositorys_keys_leave_the_builtin_trainers_keys_alone(world, tmp_path):
    """The stand-in's train.py rebuilds TRAINER.COOP with CTX_INIT = False (KgCoOp's): the built-in
    CoOp keeps its keys (its yaml's CTX_INIT is words) and gets only the new ones; the
    repository's trainer gets its repository's node."""
    load_trainer_files([str(FORKED / "trainers" / "kgcoop.py"), str(FORKED / "train.py")])
    builtin = setup_cfg(parse_args(argv(world, "CoOp", tmp_path / "a")))
    assert builtin.TRAINER.COOP.CTX_INIT == "a photo of a" and builtin.TRAINER.COOP.PREC == "fp32"
    assert builtin.TRAINER.COOP.W == 8.0 and builtin.LOSS.NAME == "ce"  # keys it lacked are added
    theirs = setup_cfg(parse_args(argv(world, "KgCoOp", tmp_path / "b", config=PLAIN)))
    assert theirs.TRAINER.COOP.CTX_INIT is False and theirs.TRAINER.COOP.PREC == "fp16"
    assert theirs.TRAINER.COOP.W == 8.0 and theirs.TRAINER.REPTOK.N_REP_TOKENS == 2


def test_a_subclass_of_a_repositorys_trainer_elsewhere_gets_that_repositorys_keys(tmp_path):
    """The recipe for a forked Dassl's method: a subclass, in a file of one's own, of the class the
    registry holds; it reads the repository's keys as its base does."""
    (tmp_path / "mine.py").write_text(
        "from dassl.engine import TRAINER_REGISTRY\n\nKgCoOp = TRAINER_REGISTRY.get('KgCoOp')\n\n\n"
        "@TRAINER_REGISTRY.register()\nclass MyKgCoOp(KgCoOp):\n    pass\n")
    load_trainer_files([str(FORKED / "trainers" / "kgcoop.py"), str(tmp_path / "mine.py"), str(FORKED / "train.py")])
    from engine.config import get_cfg

    assert get_cfg("MyKgCoOp").TRAINER.COOP.CTX_INIT is False and get_cfg("MyKgCoOp").TRAINER.REPTOK.N_REP_TOKENS == 2


def test_a_key_two_sources_set_differently_is_one_error(tmp_path):
    copy_of_coop(tmp_path / "repo")
    (tmp_path / "repo" / "a.yaml").write_text(yaml.safe_dump({"TRAINER": {"COOP": {"N_CTX": 4}}}))
    (tmp_path / "repo" / "b.yaml").write_text(yaml.safe_dump({"TRAINER": {"COOP": {"N_CTX": 8}}}))
    load_trainer_files([str(tmp_path / "repo" / name) for name in ("coop.py", "a.yaml", "b.yaml")])
    from engine.config import get_cfg

    with pytest.raises(ConfigError, match=rf"Config key TRAINER.COOP.N_CTX is 4 in {tmp_path}/repo/a.yaml \(defaults\) "
                                          rf"and 8 in {tmp_path}/repo/b.yaml \(defaults\), and both apply to trainer CoOp"):
        get_cfg("CoOp")
    assert get_cfg("CoCoOp").TRAINER.COOP.N_CTX == 16  # a built-in trainer: its own value, no conflict


def test_each_repositorys_keys_apply_to_its_own_trainers(tmp_path):
    """Two repositories whose train.py set TRAINER.COOP.CTX_INIT to False and "": each trainer gets
    its own repository's value; no conflict."""
    for repo, value in (("kg", "False"), ("maple", '""')):
        folder = tmp_path / repo / "trainers"
        copy_of_coop(folder)
        (folder / "coop.py").write_text((folder / "coop.py").read_text().replace("class CoOp", f"class {repo.title()}"))
        (tmp_path / repo / "train.py").write_text(
            f"from yacs.config import CfgNode as CN\n\n\ndef extend_cfg(cfg):\n    cfg.TRAINER.COOP = CN()\n"
            f"    cfg.TRAINER.COOP.CTX_INIT = {value}\n")
    load_trainer_files([str(tmp_path / r / p) for r in ("kg", "maple") for p in ("trainers/coop.py", "train.py")])
    from engine.config import get_cfg

    assert get_cfg("Kg").TRAINER.COOP.CTX_INIT is False and get_cfg("Maple").TRAINER.COOP.CTX_INIT == ""
    assert get_cfg("CoOp").TRAINER.COOP.CTX_INIT == ""


def test_a_sweep_runs_the_builtin_coop_beside_a_repositorys_trainer(attr_color_shape_root, tmp_path):
    """tools/sweep.py --trainer-file with a train.py that rebuilds TRAINER.COOP (KgCoOp's way) and
    --methods CoOp DasslCoOp: both finish, the built-in CoOp with its own keys and code."""
    (tmp_path / "kg").mkdir()
    (tmp_path / "kg" / "train.py").write_text(
        "from yacs.config import CfgNode as CN\n\n\ndef extend_cfg(cfg):\n    cfg.TRAINER.COOP = CN()\n"
        "    cfg.TRAINER.COOP.CTX_INIT = False\n    cfg.TRAINER.COOP.W = 8.0\n")
    out = tmp_path / "output"
    command = [sys.executable, "tools/sweep.py", "--trainer-file", str(EXAMPLES), str(tmp_path / "kg" / "train.py"),
               "--protocol", "fewshot", "--config-set", "tiny", "--methods", "CoOp", "DasslCoOp", "--configs",
               "DasslCoOp=tiny", "--datasets", "attr_color_shape", "--seeds", "1", "--shots", "1",
               "--root", str(attr_color_shape_root), "--output", str(out), "--opts", "OPTIM.MAX_EPOCH", "1",
               "DATALOADER.NUM_WORKERS", "0"]
    run = subprocess.run(command, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    runs = {results(path.parent)["trainer"]: results(path.parent) for path in out.rglob("results.json")}
    assert set(runs) == {"CoOp", "DasslCoOp"}
    coop = runs["CoOp"]
    assert coop["config"]["TRAINER"]["COOP"]["CTX_INIT"] == "a photo of a" and "trainer_code" not in coop["manifest"]
    assert coop["config"]["TRAINER"]["COOP"]["W"] == 8.0  # the key it lacked, added
    assert runs["DasslCoOp"]["manifest"]["trainer_code"]["file"] == str(EXAMPLES / "coop.py")
