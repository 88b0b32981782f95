"""A training step that computes the frozen image prefix once (backbone: image_states, then
forward_image(..., start_layer)) gives exactly the logits, losses and gradients of two full passes, in fp32."""
import pytest
import torch

from backbone import TowerHooks, load_clip
from engine.registry import TRAINER_REGISTRY
from tests.minidata import make_caltech_like
from train import parse_args, setup_cfg

CONFIGS = {"MMRL": "configs/trainers/MMRL/tiny_ep10_batch4.yaml",
           "MMRLpp": "configs/trainers/MMRLpp/tiny_ep10_batch4.yaml",
           "DeAR": "configs/trainers/DeAR/tiny_ep10_batch4.yaml"}
OUTPUTS = {"MMRL": ("logits", "logits_rep", "logits_fused", "image", "text"),
           "DeAR": ("path_logits", "logits", "cls_features", "text_features")}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_caltech_like(tmp_path_factory.mktemp("data"), size=64)


def trainer(method, root, out):
    cfg = setup_cfg(parse_args([
        "--root", str(root), "--seed", "1", "--trainer", method, "--dataset-config-file",
        "configs/datasets/caltech101.yaml", "--config-file", CONFIGS[method], "--output-dir", str(out),
        "DATALOADER.NUM_WORKERS", "0", f"TRAINER.{TRAINER_REGISTRY.get(method).CONFIG_NODE}.PREC", "fp32"]))
    return TRAINER_REGISTRY.get(method)(cfg)


def step(t, images, labels, share):
    t.model.zero_grad(set_to_none=True)
    out, losses = t.training_losses(images, labels, share_prefix=share)[:2]
    losses["loss"].backward()
    grads = {k: p.grad.clone() for k, p in t.model.named_parameters() if p.requires_grad}
    return out, {k: v.detach() for k, v in losses.items()}, grads


@pytest.mark.parametrize("method", list(CONFIGS))
def test_shared_prefix_step_is_bit_identical(method, data_root, tmp_path):
    t = trainer(method, data_root, tmp_path)
    t.set_model_mode("train")
    images, labels = t.parse_batch_train(next(iter(t.train_loader_x)))
    two_pass = step(t, images, labels, share=False)
    shared = step(t, images, labels, share=True)
    for field in OUTPUTS["DeAR" if method == "DeAR" else "MMRL"]:
        assert torch.equal(getattr(two_pass[0], field), getattr(shared[0], field)), field
    assert two_pass[1].keys() == shared[1].keys()
    assert all(torch.equal(two_pass[1][k], shared[1][k]) for k in two_pass[1])
    assert two_pass[2].keys() == shared[2].keys() and len(shared[2]) > 0
    assert all(torch.equal(two_pass[2][k], shared[2][k]) for k in two_pass[2])


def test_prefix_then_rest_is_the_whole_tower_on_vit_b16():
    clip = load_clip("ViT-B/16", pretrained=False)
    images = torch.randn(2, 3, 224, 224)
    tokens = torch.randn(3, clip.vision_width)
    hooks = TowerHooks(before_block=lambda i, x: torch.cat([x, tokens.expand(x.shape[0], -1, -1)], 1) if i == 8 else x)
    with torch.no_grad():
        whole = clip.forward_image(images, hooks)
        prefix = clip.image_states(images, 8)
        rest = clip.forward_image(prefix, hooks, start_layer=8)
    assert torch.equal(whole.features, rest.features) and torch.equal(whole.tokens, rest.tokens)
    zero = clip.forward_image(clip.image_states(images, 0), hooks, start_layer=0)  # the states after ln_pre
    assert torch.equal(whole.features, zero.features)
    with pytest.raises(ValueError, match="hooks act before block 8"):
        clip.forward_image(prefix, TowerHooks(capture_heads=(3,)), start_layer=8)
