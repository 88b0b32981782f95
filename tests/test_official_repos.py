"""The published trainer files themselves, where checkouts of their repositories are on this machine
(skipped otherwise; nothing is downloaded): $PROMPTLAB_OFFICIAL_REPOS names a folder holding
`CoOp` (KaiyangZhou/CoOp), `multimodal-prompt-learning` (muzairkhattak/multimodal-prompt-learning), `PromptSRC`
(muzairkhattak/PromptSRC) and `MMRL` (yunncheng/MMRL).

Each file is loaded with its repository's train.py through --trainer-file, so it runs on its
repository's own clip/ (MaPLe's, PromptSRC's and MMRL's are forks with their model code); the
built-in trainer is built on the same OpenAI-format weights, its learnable tensors are copied from
the file's model, and the logits of attribute-world test images must agree within 1e-5 in fp32.
The weights are a random CLIP as wide as ViT-B/16 (the official MaPLe hard-codes 512 and 768) with
4 text and 6 vision layers. MMRL's official code writes the logit scale 100; the built-in's tiny config
reads the weights' (LOGIT_SCALE 0, trainers/mmrl.py): its logits are compared at the weights' scale."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
from open_clip.model import CLIP

import trainers  # noqa: F401  (registers the built-in trainers first, as train.py does)
from attrworld import derived
from engine.registry import TRAINER_REGISTRY
from external import load_trainer_files
from tests.external_world import restored_process
from train import parse_args, setup_cfg

OFFICIAL = Path(os.environ.get("PROMPTLAB_OFFICIAL_REPOS", "/nonexistent"))
# method: (its files in the checkouts, promptlab's tiny config, extra options)
METHODS = {
    "CoOp": (["CoOp/trainers/coop.py", "CoOp/train.py"], "CoOp/tiny_ep10.yaml", []),
    "CoCoOp": (["CoOp/trainers/cocoop.py", "CoOp/train.py"], "CoCoOp/tiny_c4_ep5_batch4_ctxv1.yaml", []),
    "ZeroshotCLIP": (["CoOp/trainers/zsclip.py", "CoOp/train.py"], "ZeroshotCLIP/tiny.yaml",
                     ["DATASET.PROMPT_TEMPLATE", "a photo of a {}."]),
    "MaPLe": (["multimodal-prompt-learning/trainers/maple.py", "multimodal-prompt-learning/train.py"], "MaPLe/tiny_c2_ep5_batch4_2ctx.yaml", []),
    "IVLP": (["multimodal-prompt-learning/trainers/independentVL.py", "multimodal-prompt-learning/train.py"], "IVLP/tiny_c2_ep5_batch4_2+2ctx.yaml", []),
    "PromptSRC": (["PromptSRC/trainers/promptsrc.py", "PromptSRC/train.py"], "PromptSRC/tiny_c2_ep10_batch4_4+4ctx.yaml",
                  []),
    "MMRL": (["MMRL/trainers/mmrl.py", "MMRL/train.py"], "MMRL/tiny_ep10_batch4.yaml",
             ["DATASET.PROMPT_TEMPLATE", "a photo of a {}."]),
}
pytestmark = pytest.mark.skipif(not all((OFFICIAL / f).is_file() for spec in METHODS.values() for f in spec[0]),
                                reason="no checkouts of the official repositories ($PROMPTLAB_OFFICIAL_REPOS)")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("DATA")
    derived.generate(derived.DATASETS["AttrTextureShape"], root)
    torch.manual_seed(0)
    model = CLIP(embed_dim=512, quick_gelu=True,
                 vision_cfg={"image_size": 64, "layers": 6, "width": 768, "patch_size": 16},
                 text_cfg={"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 4})
    torch.save(model.state_dict(), root / "vit_b16_wide.pt")
    return root


def argv(world: Path, method: str, files: list[str]) -> list[str]:
    spec = METHODS[method]
    flags = [word for f in files for word in ("--trainer-file", str(OFFICIAL / f))]
    return ["--root", str(world), "--seed", "1", "--trainer", method, "--dataset-config-file",
            "configs/datasets/attr_texture_shape.yaml", "--config-file", f"configs/trainers/{spec[1]}", "--output-dir",
            str(world / "out" / method), *flags, "MODEL.BACKBONE.NAME", str(world / "vit_b16_wide.pt"),
            "DATASET.NUM_SHOTS", "1", "DATASET.SUBSAMPLE_CLASSES", "base", "DATALOADER.NUM_WORKERS", "0",
            *(spec[2] if files else [])]


def builtin_name(method: str, official: str) -> tuple[str, int | None]:
    """The built-in's parameter (and index into it) that holds the official parameter `official`."""
    short = re.sub(r"^.*?prompt_learner\.", "", official)
    if method in ("CoOp", "CoCoOp", "MaPLe"):
        short = short.replace("compound_prompts_text", "text_prompts").replace("compound_prompt_projections", "deep_proj")
        return f"prompt_learner.{'text.ctx' if short == 'ctx' and method != 'CoOp' else short}", None
    if method in ("IVLP", "PromptSRC"):
        if official.endswith("prompt_learner.ctx"):
            return "prompt_learner.text.ctx", None
        if official.endswith("image_encoder.VPT"):
            return "prompt_learner.vision_prompts.0", None
        layer = int(re.search(r"resblocks\.(\d+)\.VPT_shallow", official)[1])
        tower = "vision_prompts" if "image_encoder" in official else "text_prompts"
        return f"prompt_learner.{tower}.{layer if tower == 'vision_prompts' else layer - 1}", None
    if official.endswith("compound_rep_tokens"):
        return "mmrl.representation.latent", None
    if official.endswith("proj_rep"):
        return "mmrl.proj_rep", None
    tower, index, kind = re.search(r"compound_rep_tokens_r2([vt])proj\.(\d+)\.(weight|bias)", official).groups()
    return f"mmrl.representation.to_{'vision' if tower == 'v' else 'text'}.{kind}", int(index)


@pytest.mark.parametrize("method", METHODS)
def test_the_official_file_gives_the_builtins_logits(world, method, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    with restored_process():
        builtin = TRAINER_REGISTRY.get(method)(setup_cfg(parse_args(argv(world, method, []))))
        load_trainer_files([str(OFFICIAL / f) for f in METHODS[method][0]])
        official = TRAINER_REGISTRY.get(method)(setup_cfg(parse_args(argv(world, method, METHODS[method][0]))))
        assert type(official).__module__.startswith("promptlab_external")
        ours = {f"{m}.{n}": p for m in builtin.get_model_names() for n, p in builtin._models[m].named_parameters()}
        torch.manual_seed(1)
        copied = set()
        with torch.no_grad():
            for m in official.get_model_names():
                for n, p in official._models[m].named_parameters():
                    if p.requires_grad:
                        p.add_(0.02 * torch.randn_like(p))  # off the initial values, so nothing agrees by accident
                        name, index = builtin_name(method, f"{m}.{n}")
                        (ours[name][index] if index is not None else ours[name]).copy_(p)
                        copied.add(name)
        assert copied == {n for n, p in ours.items() if p.requires_grad}
        images = next(iter(builtin.test_loader))["img"][:16]
        official.set_model_mode("eval")
        builtin.set_model_mode("eval")
        with torch.no_grad(), builtin.evaluation_context():
            theirs = official.model(images)[2] if method == "MMRL" else official.model_inference(images)
            if method == "MMRL":  # the official code's logit scale is 100
                theirs = theirs * builtin.model.clip.logit_scale.exp() / 100
            torch.testing.assert_close(theirs.float(), builtin.model_inference(images).float(), atol=1e-5, rtol=0)
