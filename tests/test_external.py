"""Trainer files written for Dassl and OpenAI's clip (external/, compat/, examples/dassl_trainers):
the layers' semantics, the example trainers base-to-new on tiny-attr through train.py and
tools/compare.py, equality with our CoOp and with our backbone, and the import isolation."""
from __future__ import annotations

import ast
import csv
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
import torch
import yaml
from open_clip.tokenizer import SimpleTokenizer as OpenClipTokenizer
from torch import nn

import trainers  # noqa: F401  (registers the built-in trainers first, as train.py does)
from backbone import load_clip
from engine.config import get_cfg
from engine.errors import CheckpointError, ConfigError, UsageError
from engine.registry import TRAINER_REGISTRY
from external import ENV_VAR, cpu_fallback, loader, load_trainer_files
from tests.external_world import DATASET, openai_format_clip, restored_process
from train import main
from trainers.coop import CoOpCLIP, PromptLearner

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "dassl_trainers"
CLASSES = ["striped circle", "dotted_square", "plain star", "a very long class name with many words"]
EXAMPLE_TRAINERS = {"DasslCoOp": "prompt_learner", "DasslCoCoOp": "prompt_learner", "DasslCLIPAdapter": "clip_adapter"}
# 1 shot of the 16 base classes, 1 epoch without warm-up: seconds per trainer on 2 CPU cores.
FAST = ["DATASET.NUM_SHOTS", "1", "OPTIM.MAX_EPOCH", "1", "OPTIM.WARMUP_EPOCH", "-1", "OPTIM.LR", "0.05",
        "DATALOADER.NUM_WORKERS", "0"]


@pytest.fixture(scope="module")
def layers():
    """The example trainers loaded with compat/ on sys.path. Afterwards every piece of process state
    that loading touched is put back, so later test modules see promptlab alone."""
    with restored_process():
        load_trainer_files([str(EXAMPLES)])
        yield


@pytest.fixture(autouse=True)
def no_cpu_fallback_left():
    yield
    cpu_fallback.uninstall()


def example(name: str):
    return sys.modules[TRAINER_REGISTRY.get(name).__module__]


# ---- isolation ----------------------------------------------------------------------------------------
OWN_CODE = ["train.py", "engine", "backbone", "trainers", "datasets", "tools", "external", "headroles", "attrworld",
            "bench"]
# The one file that runs the official repositories' own Dassl and clip, in its own process, to time them.
OFFICIAL_SIDE = {"bench/vs_official.py"}


def test_own_code_never_imports_dassl_or_clip():
    offenders = []
    for entry in OWN_CODE:
        for path in sorted((REPO / entry).rglob("*.py")) if (REPO / entry).is_dir() else [REPO / entry]:
            if str(path.relative_to(REPO)) in OFFICIAL_SIDE:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
                offenders += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] in ("dassl", "clip")]
    assert offenders == []


def test_an_installed_dassl_and_clip_are_shadowed_only_where_trainer_files_run(tmp_path):
    for name in ("dassl", "clip"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("INSTALLED = True\n")
    code = (
        "import importlib.util, sys, train, tools.sweep\n"
        "print([importlib.util.find_spec(n).origin for n in ('dassl', 'clip')])\n"  # promptlab's imports left them
        f"from external import load_trainer_files; load_trainer_files([{str(EXAMPLES)!r}])\n"
        "import dassl, clip\n"
        "print([m.__file__ for m in (dassl, clip)])\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PYTHONPATH": str(tmp_path)},
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == str([str(tmp_path / n / "__init__.py") for n in ("dassl", "clip")])
    assert lines[-1] == str([str(REPO / "compat" / n / "__init__.py") for n in ("dassl", "clip")])
    assert f"Note: the installed 'dassl' ({tmp_path / 'dassl' / '__init__.py'}) is not used in this process" in run.stdout


def test_a_dassl_imported_before_the_layers_is_refused(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "dassl", type(sys)("dassl"))
    sys.modules["dassl"].__file__ = str(tmp_path / "dassl" / "__init__.py")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(loader.COMPAT_DIR)])
    with pytest.raises(UsageError, match="A 'dassl' package .* was imported before promptlab's dassl layer"):
        loader.activate()


# ---- the clip layer -----------------------------------------------------------------------------------
def test_tokenize_gives_openai_ids_dtype_and_layout(layers):
    from clip import clip

    ids = clip.tokenize("a photo of a cat.", context_length=77)
    assert ids.dtype == torch.int32 and ids.shape == (1, 77)
    # OpenAI's ids: <|startoftext|> a photo of a cat . <|endoftext|>, then zeros
    assert ids[0, :9].tolist() == [49406, 320, 1125, 539, 320, 2368, 269, 49407, 0] and not ids[0, 8:].any()
    texts = ["Hello, World!", "café naïve", "emoji 🙂", "don't  stop\tnow", "日本語"]
    reference = OpenClipTokenizer()  # the same BPE, open_clip's port of OpenAI's tokenizer
    expected = torch.zeros(len(texts), 77, dtype=torch.int)
    for i, text in enumerate(texts):
        row = [49406, *reference.encode(text), 49407]
        expected[i, :len(row)] = torch.tensor(row)
    assert torch.equal(clip.tokenize(texts, context_length=77), expected)
    assert clip.tokenize("<|endoftext|>", context_length=77)[0, :3].tolist() == [49406, 49407, 49407]


def test_tokenize_truncation_error_and_truncate(layers):
    from clip import clip

    text = "word " * 80
    with pytest.raises(RuntimeError) as err:
        clip.tokenize(text, context_length=77)
    assert str(err.value) == f"Input {text} is too long for context length 77"
    cut = clip.tokenize(text, context_length=77, truncate=True)
    assert cut[0, 0] == 49406 and cut[0, -1] == 49407 and (cut[0, 1:-1] == 2653).all()  # 2653: "word</w>"
    assert clip.tokenize("a b c", context_length=5).tolist() == [[49406, 320, 321, 322, 49407]]
    with pytest.raises(RuntimeError, match="too long for context length 4"):
        clip.tokenize("a b c", context_length=4)


def test_simple_tokenizer_speaks_openais_special_tokens(layers):
    from clip.simple_tokenizer import SimpleTokenizer

    tok = SimpleTokenizer()
    assert tok.encoder["<|startoftext|>"] == 49406 and tok.encoder["<|endoftext|>"] == 49407
    assert "<start_of_text>" not in tok.encoder and len(tok.encoder) == 49408
    assert tok.decode(tok.encode("A Photo of <|endoftext|>")) == "a photo of <|endoftext|>"


def openai_format_state(tmp_path: Path) -> Path:
    return openai_format_clip(tmp_path / "openai_format.pt", image_size=32)


OPENAI_NAMES = ("visual", "transformer", "token_embedding", "positional_embedding", "ln_final", "text_projection",
                "logit_scale", "dtype", "encode_image", "encode_text")


def test_build_model_equals_our_backbone_on_an_openai_state_dict(layers, tmp_path):
    from clip import clip

    path = openai_format_state(tmp_path)
    state = torch.load(path)
    model = clip.build_model(state)
    ours = load_clip(str(path), precision="fp32")
    assert all(hasattr(model, name) for name in OPENAI_NAMES) and model.visual.input_resolution == 32
    assert list(model.state_dict()) == list(state) and model.dtype == torch.float32
    assert all(p.requires_grad for p in model.parameters()) and not model.training  # as OpenAI's build_model
    images = torch.randn(3, 3, 32, 32)
    ids = clip.tokenize(["a photo of a cat.", "a striped circle", "x"])
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(images), ours.encode_image(images), atol=1e-5, rtol=0)
        torch.testing.assert_close(model.encode_text(ids), ours.encode_text(ids), atol=1e-5, rtol=0)
        # OpenAI's conventions inside: sequence-first transformer, blocks that carry the causal mask
        x = model.token_embedding(ids) + model.positional_embedding
        whole = model.transformer(x.permute(1, 0, 2))
        by_block = x.permute(1, 0, 2)
        for block in model.transformer.resblocks:
            by_block = block(by_block)
        torch.testing.assert_close(whole, by_block, atol=0, rtol=0)
        pooled = model.ln_final(whole.permute(1, 0, 2))[torch.arange(3), ids.argmax(-1)] @ model.text_projection
        torch.testing.assert_close(pooled, ours.encode_text(ids), atol=1e-5, rtol=0)


def test_build_model_refuses_forked_model_code(layers, tmp_path):
    from clip import clip

    with pytest.raises(UsageError, match=r"clip\.build_model\(state_dict, design_details\) is a forked CLIP"):
        clip.build_model(torch.load(openai_format_state(tmp_path)), {"trainer": "MaPLe", "vision_depth": 0})


def test_models_and_download(layers, tmp_path, monkeypatch):
    from clip import clip

    assert clip.available_models()[:9] == ["RN50", "RN101", "RN50x4", "RN50x16", "RN50x64", "ViT-B/32", "ViT-B/16",
                                           "ViT-L/14", "ViT-L/14@336px"]
    assert clip._download(clip._MODELS["tiny-attr"]) == str(REPO / "backbone" / "weights" / "tiny-attr.pt")
    with pytest.raises(UsageError, match="is not one of clip._MODELS' URLs"):
        clip._download("https://example.com/model.pt")
    monkeypatch.setenv("CLIP_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match=r"No local weights for ViT-B/16 and HF_HUB_OFFLINE is set"):
        clip._download(clip._MODELS["ViT-B/16"])
    (tmp_path / "ViT-B-16.pt").write_bytes(b"not the weights")
    with pytest.raises(CheckpointError, match=r"ViT-B-16.pt: its SHA256 [0-9a-f]{64} is not the 5806e77c"):
        clip._download(clip._MODELS["ViT-B/16"])
    model, preprocess = clip.load("tiny-attr", device="cpu")
    assert model.visual.input_resolution == 64 and preprocess.transforms[1].size == (64, 64)
    assert clip.tokenize("a cat").shape == (1, 32)  # the default length follows the last model built


@pytest.mark.skipif(torch.cuda.is_available(), reason="without CUDA the weights stay fp32")
def test_convert_weights_and_weights_files_as_model_names(layers, tmp_path):
    """CoOp's zsclip.py imports clip.model.convert_weights; load_clip_to_cpu looks MODEL.BACKBONE.NAME
    up in clip._MODELS, which takes a weights file's path as promptlab's backbones do."""
    from clip import clip
    from clip.model import convert_weights

    path = openai_format_state(tmp_path)
    assert clip._MODELS[str(path)] == str(path) and clip._download(clip._MODELS[str(path)]) == str(path)
    with pytest.raises(KeyError, match="MODEL.BACKBONE.NAME 'ViT-X/99' is neither one of clip._MODELS"):
        clip._MODELS["ViT-X/99"]
    model = clip.build_model(torch.load(path))
    convert_weights(model)
    assert {p.dtype for p in model.parameters()} == {torch.float32}


# ---- the Dassl layer ---------------------------------------------------------------------------------
def test_compute_accuracy_and_optimizer_semantics(layers):
    from dassl.metrics import compute_accuracy
    from dassl.optim import build_optimizer

    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.15, 0.05], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    top1, top2 = compute_accuracy(logits, torch.tensor([1, 1, 0, 0]), topk=(1, 2))
    assert top1.tolist() == [50.0] and top2.tolist() == [75.0]
    cfg = get_cfg()
    model = nn.Sequential()
    model.add_module("base", nn.Linear(2, 2))
    model.add_module("head", nn.Linear(2, 2))
    cfg.OPTIM.NAME, cfg.OPTIM.STAGED_LR, cfg.OPTIM.NEW_LAYERS, cfg.OPTIM.LR = "sgd", True, ("head",), 0.1
    groups = build_optimizer(model, cfg.OPTIM).param_groups
    assert [g["lr"] for g in groups] == [pytest.approx(0.01), 0.1] and groups[1]["params"][0] is model.head.weight
    cfg.OPTIM.NAME = "rmsprop"
    assert type(build_optimizer(model, cfg.OPTIM, param_groups=[{"params": [model.head.bias]}])).__name__ == "RMSprop"
    cfg.OPTIM.NAME = "lbfgs"
    with pytest.raises(ValueError, match=r"optim must be one of \['adam', 'amsgrad', 'sgd', 'rmsprop', 'radam', 'adamw'\]"):
        build_optimizer(model, cfg.OPTIM)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_dassl_load_checkpoint_reads_tensors_and_refuses_pickled_code(layers, tmp_path):
    """dassl.utils.load_checkpoint reads as the toolbox does (weights_only): a plain Dassl-style
    checkpoint and a bare state dict load, a pickled object is refused without running it."""
    from dassl.utils import load_checkpoint

    saved = {"state_dict": {"w": torch.arange(3.0)}, "epoch": 2, "optimizer": {"state": {}, "param_groups": []}}
    torch.save(saved, tmp_path / "good.pth")
    loaded = load_checkpoint(str(tmp_path / "good.pth"))
    assert torch.equal(loaded["state_dict"]["w"], torch.arange(3.0)) and loaded["epoch"] == 2
    torch.save({"w": torch.ones(2)}, tmp_path / "weights.pth")  # load_pretrained_weights' bare state dict
    assert torch.equal(load_checkpoint(str(tmp_path / "weights.pth"))["w"], torch.ones(2))
    marker = tmp_path / "PWNED"
    torch.save({"state_dict": {}, "x": _Payload(marker)}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match=r"Refusing to load checkpoint .*evil.pth: it holds Python objects "
                                              r"\(posix.system\)"):
        load_checkpoint(str(tmp_path / "evil.pth"))
    assert not marker.exists()


def test_config_keys_from_extend_cfg_without_importing_the_file_and_from_yaml(layers, tmp_path):
    with restored_process():
        config_keys_from_extend_cfg_and_yaml(tmp_path)


def config_keys_from_extend_cfg_and_yaml(tmp_path):
    (tmp_path / "train.py").write_text(
        "import a_module_that_does_not_exist\nfrom yacs.config import CfgNode as CN\n\n\ndef extend_cfg(cfg):\n"
        "    cfg.TRAINER.MINE = CN()\n    cfg.TRAINER.MINE.W = 8.0\n    cfg.LOSS = CN()\n    cfg.LOSS.NAME = 'kl'\n")
    (tmp_path / "defaults.yaml").write_text(yaml.safe_dump({"TRAINER": {"OTHER": {"N": 3}}, "OPTIM": {"LR": 0.5}}))
    load_trainer_files([str(tmp_path / "train.py"), str(tmp_path / "defaults.yaml")])
    cfg = get_cfg("DasslCoOp")
    assert (cfg.TRAINER.MINE.W, cfg.LOSS.NAME, cfg.TRAINER.OTHER.N, cfg.OPTIM.LR) == (8.0, "kl", 3, 0.5)
    cfg = get_cfg("CoOp")  # a built-in trainer: the new keys, promptlab's values for the keys it has
    assert (cfg.TRAINER.MINE.W, cfg.LOSS.NAME, cfg.TRAINER.OTHER.N, cfg.OPTIM.LR) == (8.0, "kl", 3, 0.0003)
    assert {loader.LOADED[tmp_path / "train.py"], loader.LOADED[tmp_path / "defaults.yaml"]} == {"extend_cfg", "defaults"}


def test_undeclared_trainer_node_is_a_config_error(layers, tmp_path):
    (tmp_path / "mine.py").write_text(
        "from dassl.engine import TRAINER_REGISTRY, TrainerX\n\n@TRAINER_REGISTRY.register()\nclass Mine(TrainerX):\n"
        "    def build_model(self):\n        self.n = self.cfg.TRAINER.MINEX.N_CTX + self.cfg.TRAINER.NAME.count('x')\n")
    load_trainer_files([str(tmp_path / "mine.py")])
    with pytest.raises(ConfigError, match=r"Mine \(.*mine.py\) reads cfg.TRAINER.MINEX, which no config declares"):
        TRAINER_REGISTRY.get("Mine")(get_cfg())


def test_unsupported_dassl_name_names_the_file(layers, tmp_path):
    (tmp_path / "odd.py").write_text("from dassl.utils import a_name_dassl_never_had\n")
    with pytest.raises(loader.ExternalCodeError, match=r"odd.py: cannot import name 'a_name_dassl_never_had'"):
        load_trainer_files([str(tmp_path / "odd.py")])


@pytest.mark.skipif(torch.cuda.is_available(), reason="the fallback is for machines without CUDA")
def test_cpu_fallback_turns_cuda_and_half_into_cpu_fp32(capsys):
    cpu_fallback.install()
    assert capsys.readouterr().out.strip() == cpu_fallback.NOTE
    layer = nn.Linear(2, 2).cuda().half()
    x = torch.ones(1, 2).to("cuda:0").half()
    assert layer.weight.dtype == x.dtype == torch.float32 and layer(x.cuda()).device.type == "cpu"
    assert torch.ones(1).to(torch.device("cuda"), torch.float64).dtype == torch.float64
    cpu_fallback.uninstall()
    assert torch.ones(1).half().dtype == torch.float16


# ---- the example trainers end to end -------------------------------------------------------------------
def test_dassl_coop_gives_our_coops_logits(layers):
    common = sys.modules[example("DasslCoOp").__package__ + ".common"]
    for ctx_init in ("", "a photo of a"):
        cfg = get_cfg()
        cfg.MODEL.BACKBONE.NAME, cfg.INPUT.SIZE = "tiny-attr", (64, 64)
        cfg.TRAINER.DASSLCOOP.N_CTX, cfg.TRAINER.DASSLCOOP.CTX_INIT = 4, ctx_init
        torch.manual_seed(0)
        theirs = example("DasslCoOp").CustomCLIP(cfg, CLASSES, common.load_clip_to_cpu(cfg).float()).eval()
        clip = load_clip("tiny-attr", precision="fp32")
        learner = PromptLearner(clip, CLASSES, 4, ctx_init, False, "end")
        if ctx_init:
            assert torch.equal(theirs.prompt_learner.ctx, learner.ctx)  # the same words, the same vectors
        else:
            theirs.prompt_learner.ctx.data.copy_(learner.ctx.data)
        ours = CoOpCLIP(clip, learner).eval()
        images = torch.randn(6, 3, 64, 64)
        with torch.no_grad():
            torch.testing.assert_close(theirs(images), ours(images), atol=1e-5, rtol=0)


def run_dir(out: Path, part: str, trainer: str, seed: int = 1) -> Path:
    return out / "base2new" / part / DATASET / "shots_1" / trainer / "tiny" / f"seed{seed}"


def argv(root: Path, out: Path, trainer: str, part: str, *extra: str) -> list[str]:
    subsample = "base" if part == "train_base" else "new"
    return ["--root", str(root), "--seed", "1", "--trainer", trainer, "--output-dir", str(run_dir(out, part, trainer)),
            "--dataset-config-file", str(root / "dataset.yaml"),
            "--config-file", f"configs/trainers/{trainer}/tiny.yaml", *extra,
            *FAST, "DATASET.SUBSAMPLE_CLASSES", subsample]


@pytest.fixture(scope="module")
def base2new(layers, tmp_path_factory):
    """Each example trainer trained on the base classes and evaluated on the new ones, in the sweep's
    tree. DasslCoOp gets its files through $PROMPTLAB_TRAINER_FILES, the others through --trainer-file."""
    root = tmp_path_factory.mktemp("DATA")
    (root / "dataset.yaml").write_text(yaml.safe_dump({"DATASET": {"NAME": "AttrTinyTextureShape"}}))
    out = tmp_path_factory.mktemp("output")
    for trainer in EXAMPLE_TRAINERS:
        flag = [] if trainer == "DasslCoOp" else ["--trainer-file", str(EXAMPLES)]
        with pytest.MonkeyPatch.context() as mp:
            if not flag:
                mp.setenv(ENV_VAR, str(EXAMPLES))
            main(argv(root, out, trainer, "train_base", *flag))
            model_dir = run_dir(out, "train_base", trainer)
            main(argv(root, out, trainer, "test_new", *flag, "--model-dir", str(model_dir), "--load-epoch", "1",
                      "--eval-only"))
        cpu_fallback.uninstall()
    return out


def accuracy(run: Path) -> float:
    return json.loads((run / "results.json").read_text())["evaluations"]["test"]["metrics"]["accuracy"]


@pytest.mark.parametrize("trainer", EXAMPLE_TRAINERS)
def test_example_trainer_runs_base_to_new_with_our_checkpoints(base2new, trainer):
    base, new = run_dir(base2new, "train_base", trainer), run_dir(base2new, "test_new", trainer)
    name = EXAMPLE_TRAINERS[trainer]
    assert sorted(p.name for p in (base / name).iterdir()) == [
        "checkpoint", "model.pth.tar-1", "model.pth.tar-1.sha256"]
    ckpt = torch.load(base / name / "model.pth.tar-1", weights_only=False)
    learnable = {"DasslCoOp": ["ctx"], "DasslCLIPAdapter": ["fc.0.weight", "fc.2.weight"],
                 "DasslCoCoOp": ["ctx", "meta_net.linear1.bias", "meta_net.linear1.weight", "meta_net.linear2.bias",
                                 "meta_net.linear2.weight"]}[trainer]
    assert sorted(ckpt["state_dict"]) == learnable  # learnable tensors only: no CLIP, no token buffers
    assert ckpt["meta"]["trainer"] == trainer and ckpt["epoch"] == 1
    assert ckpt["scheduler"]["last_epoch"] == 1  # stepped by the file's forward_backward alone, as in Dassl
    if not torch.cuda.is_available():  # PREC fp16 code, run in fp32 without CUDA
        assert all(v.dtype == torch.float32 for v in ckpt["state_dict"].values())
    for run in (base, new):
        results = json.loads((run / "results.json").read_text())
        assert results["trainer"] == trainer and results["evaluations"]["test"]["epoch"] == 1
        trainer_file = EXAMPLES / f"{example(trainer).__name__.rsplit('.', 1)[1]}.py"
        assert results["external"]["trainer_file"] == str(trainer_file)
        files = {Path(f["path"]): (f["kind"], f["sha256"]) for f in results["external"]["files"]}
        for path, kind in ((trainer_file, "module"), (EXAMPLES / "common.py", "module"), (EXAMPLES / "config.py", "extend_cfg")):
            assert files[path] == (kind, hashlib.sha256(path.read_bytes()).hexdigest())
        log = (run / "log.txt").read_text()
        assert f"* accuracy: {accuracy(run):.1f}%" in log
    assert "SUBSAMPLE NEW CLASSES!" in (new / "log.txt").read_text()


def test_the_training_step_moved_the_context(base2new):
    """The optimizer that register_model received stepped: the trained context is not its initial
    words (a layer that never stepped would leave CoOp zero-shot)."""
    ckpt = torch.load(run_dir(base2new, "train_base", "DasslCoOp") / "prompt_learner" / "model.pth.tar-1",
                      weights_only=False)
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME, cfg.INPUT.SIZE, cfg.TRAINER.DASSLCOOP.CTX_INIT = "tiny-attr", (64, 64), "a photo of a"
    common = sys.modules[example("DasslCoOp").__package__ + ".common"]
    start = example("DasslCoOp").PromptLearner(cfg, CLASSES, common.load_clip_to_cpu(cfg)).ctx
    assert not torch.allclose(ckpt["state_dict"]["ctx"], start)


def test_compare_puts_the_example_trainers_in_the_table(base2new):
    table = subprocess.run([sys.executable, "tools/compare.py", str(base2new), "--protocol", "base2new", "--format", "csv"],
                           cwd=REPO, capture_output=True, text=True, check=True).stdout
    rows = {(r["dataset"], r["method"]): r for r in csv.DictReader(io.StringIO(table))}
    for trainer in EXAMPLE_TRAINERS:
        row = rows[(DATASET, trainer)]
        b, n = accuracy(run_dir(base2new, "train_base", trainer)), accuracy(run_dir(base2new, "test_new", trainer))
        assert (float(row["base_mean"]), float(row["new_mean"])) == pytest.approx((b, n), abs=5e-5)
        assert float(row["hm_of_means"]) == pytest.approx(2 * b * n / (b + n), abs=5e-5)


def test_sweep_plans_external_trainers_with_their_files(layers, tmp_path):
    from sweeps.command import main as sweep_main

    command = ["--protocol", "base2new", "--methods", "DasslCoOp", "DasslCLIPAdapter", "--configs", "DasslCoOp=tiny",
               "DasslCLIPAdapter=tiny", "--datasets", "attr_texture_shape", "--seeds", "1", "--shots", "1",
               "--trainer-file", str(EXAMPLES), "--output", str(tmp_path), "--dry-run"]
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "stdout", out)
        assert sweep_main(command) == 0
    lines = out.getvalue().splitlines()
    env = f"SHOTS=1 OUTPUT={tmp_path} {ENV_VAR}={EXAMPLES}"
    assert lines == [f"{env} bash scripts/run.sh base2new_{step} {t} tiny attr_texture_shape 1"
                     for t in ("DasslCoOp", "DasslCLIPAdapter") for step in ("train", "test")]


def test_a_coop_style_dataset_file_registers_and_loads(layers, tmp_path):
    for c, name in enumerate(["cat", "dog", "owl"]):
        for i in range(4):
            (tmp_path / "data" / "mini" / name).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8), (60 * c, 10 * i, 0)).save(tmp_path / "data" / "mini" / name / f"{i}.png")
    (tmp_path / "mini.py").write_text('''
import os

from dassl.data.datasets import DATASET_REGISTRY, Datum, DatasetBase
from dassl.utils import listdir_nohidden, mkdir_if_missing, read_json, write_json


@DATASET_REGISTRY.register()
class Mini(DatasetBase):
    dataset_dir = "mini"

    def __init__(self, cfg):
        root = os.path.join(os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT)), self.dataset_dir)
        split_path = os.path.join(root, "split.json")
        if not os.path.exists(split_path):
            items = [(os.path.join(c, f), label, c) for label, c in enumerate(sorted(listdir_nohidden(root)))
                     for f in listdir_nohidden(os.path.join(root, c), sort=True)]
            write_json({"train": items[0::2], "test": items[1::2]}, split_path)
        split = read_json(split_path)
        train, test = ([Datum(impath=os.path.join(root, p), label=y, classname=n) for p, y, n in split[k]]
                       for k in ("train", "test"))
        mkdir_if_missing(os.path.join(root, "split_fewshot"))
        train = self.generate_fewshot_dataset(train, num_shots=cfg.DATASET.NUM_SHOTS)
        super().__init__(train_x=train, val=test, test=test)
''')
    load_trainer_files([str(tmp_path / "mini.py")])
    from dassl.data import DataManager

    cfg = get_cfg()
    cfg.DATASET.ROOT, cfg.DATASET.NAME, cfg.DATASET.NUM_SHOTS, cfg.DATALOADER.NUM_WORKERS = str(tmp_path / "data"), "Mini", 1, 0
    cfg.INPUT.SIZE = (8, 8)
    dm = DataManager(cfg)
    assert (dm.num_classes, dm.lab2cname, dm.train_loader_u, dm.num_source_domains) == (3, {0: "cat", 1: "dog", 2: "owl"}, None, 0)
    assert len(dm.dataset.train_x) == 3 and len(dm.dataset.test) == 6 and dm.dataset.classnames == ["cat", "dog", "owl"]
    assert next(iter(dm.train_loader_x))["img"].shape[1:] == (3, 8, 8)
