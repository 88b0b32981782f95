"""MMRL and MMRL++ against a hand-written reference that follows the official code
(yunncheng/MMRL@27d8821: clip/model_mmrl*.py, trainers/mmrl*.py, trainers/config.py) step by
step: logits, loss terms and gradients in fp32 on tiny-attr and on a random ViT-B/16, parameter
counts, the evaluation rule per TASK, the per-dataset settings, and train.py end to end."""
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from backbone import load_clip
from engine.errors import ConfigError
from tests.minidata import make_caltech_like
from train import main, parse_args, setup_cfg
from trainers.mmrl import MMRL, MMRLCLIP, MMRLpp, MMRLSettings, learnable_counts, mmrl_loss
from trainers.representation import scores_fused

REPO = Path(__file__).resolve().parents[1]
PROMPTS = ["a photo of a red circle.", "a photo of a blue square.", "a photo of a cat."]


# ---- the reference: the official forward, on open_clip's modules --------------------------------
def official_tokens(aligner, latent, k):
    """Layer k's tokens: compound_rep_tokens_r2*proj[k] (MMRL) or srra(rep_tokens, k) (MMRL++)."""
    if aligner.weight.dim() == 3:
        return F.linear(latent, aligner.weight[k], aligner.bias[k])
    return F.linear(latent, aligner.weight + aligner.down[k] @ aligner.up[k], aligner.bias[k])


def official_block_input(x, layer, rep_layers, context, n, beta):
    """ResidualAttentionBlock_MMRL(pp).forward before attention, batch-first: insert after the
    class/start token at the first representation layer, then replace (MMRL, beta None) or blend."""
    ctx = context.expand(x.shape[0], -1, -1)
    if layer == rep_layers[0]:
        return torch.cat([x[:, :1], ctx, x[:, 1:]], dim=1)
    new = ctx if beta is None else beta * ctx + (1 - beta) * x[:, 1:1 + n]
    return torch.cat([x[:, :1], new, x[:, 1 + n:]], dim=1)


def official_text(clip, embeddings, eot, contexts, rep_layers, n, beta):
    """TextEncoder_MMRL(pp) on the full context (no truncation), the causal mask rebuilt for the
    longer sequence from the first representation layer on, pooled at EOT + n."""
    m = clip.model
    x = embeddings + m.positional_embedding
    counter = 0
    for i, block in enumerate(m.transformer.resblocks):
        layer = i + 1
        if contexts and layer in rep_layers:
            x = official_block_input(x, layer, rep_layers, contexts[counter], n, beta)
            counter += 1
        mask = torch.full((x.shape[1], x.shape[1]), float("-inf")).triu(1)
        x = block(x, attn_mask=mask)
    x = m.ln_final(x)
    return x[torch.arange(x.shape[0]), eot + (n if contexts else 0)] @ m.text_projection


def official_image(clip, images, contexts, rep_layers, n, beta, proj_rep):
    """VisionTransformer (MMRL/MMRLpp) forward: (class feature, representation feature)."""
    v = clip.model.visual
    x = v.conv1(images).flatten(2).transpose(1, 2)
    x = torch.cat([v.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1]), x], dim=1) + v.positional_embedding
    x = v.ln_pre(x)
    counter = 0
    for i, block in enumerate(v.transformer.resblocks):
        layer = i + 1
        if contexts and layer in rep_layers:
            x = official_block_input(x, layer, rep_layers, contexts[counter], n, beta)
            counter += 1
        x = block(x)
    rep = v.ln_post(x[:, 1:1 + n]).mean(dim=1) @ proj_rep if contexts else None
    return v.ln_post(x[:, 0]) @ v.proj, rep


def official_step(model, images, labels, alpha, reg_weight):
    """CustomCLIP.forward + MMRL_Loss, with frozen CLIP (the zero-shot model) for the targets; the
    official fixed logit scale 100 (the random-init CLIP here stores 14.3)."""
    clip, s, rep = model.clip, model.settings, model.representation
    rep_layers = [layer + 1 for layer in s.layers]
    beta = s.beta if s.shared else None
    text_ctx = [official_tokens(rep.to_text, rep.latent, k) for k in range(len(rep_layers))]
    vision_ctx = [official_tokens(rep.to_vision, rep.latent, k) for k in range(len(rep_layers))]
    proj_rep = model.proj_rep if s.proj_rank == 0 else clip.image_projection + model.proj_rep_down @ model.proj_rep_up
    text = official_text(clip, model.prompt_embeddings, model.eot_index, text_ctx, rep_layers, s.n_tokens, beta)
    image, image_rep = official_image(clip, images, vision_ctx, rep_layers, s.n_tokens, beta, proj_rep)
    norm = lambda t: t / t.norm(dim=-1, keepdim=True)  # noqa: E731
    image, image_rep, text = norm(image), norm(image_rep), norm(text)
    scale = 100.
    logits, logits_rep = scale * image @ text.t(), scale * image_rep @ text.t()
    with torch.no_grad():
        frozen_image = norm(official_image(clip, images, [], rep_layers, 0, None, None)[0])
        frozen_text = norm(official_text(clip, model.prompt_embeddings, model.eot_index, [], rep_layers, 0, None))
    ce, ce_rep = F.cross_entropy(logits, labels), F.cross_entropy(logits_rep, labels)
    reg_image = 1 - torch.mean(F.cosine_similarity(image, frozen_image, dim=1))
    reg_text = 1 - torch.mean(F.cosine_similarity(text, frozen_text, dim=1))
    loss = alpha * ce + (1 - alpha) * ce_rep + reg_weight * reg_image + reg_weight * reg_text
    fused = alpha * logits + (1 - alpha) * logits_rep
    return {"logits": logits, "logits_rep": logits_rep, "logits_fused": fused, "ce": ce, "ce_rep": ce_rep,
            "reg_image": reg_image, "reg_text": reg_text, "loss": loss}


def settings(kind, layers, rep_dim):
    if kind == "MMRL":
        return MMRLSettings(n_tokens=5, layers=layers, rep_dim=rep_dim, alpha=0.7, logit_scale=100.0)
    return MMRLSettings(n_tokens=5, layers=layers, rep_dim=rep_dim, alpha=0.7, logit_scale=100.0, beta=0.6, shared=True, res_rank=4,
                        proj_rank=8)


def perturb(model):
    """Non-zero low-rank factors and distinct per-layer maps, so that a mixed-up layer index, a
    dropped residual or a wrong blend cannot pass."""
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad and name.endswith(("up", "weight", "bias")):
                p.add_(0.05 * torch.randn(p.shape, generator=g))


def check_against_official(clip, kind, layers, rep_dim, batch=2, evaluate=True):
    torch.manual_seed(3)
    model = MMRLCLIP(clip, PROMPTS, settings(kind, layers, rep_dim))
    perturb(model)
    images = torch.randn(batch, 3, clip.image_size, clip.image_size, generator=torch.Generator().manual_seed(4))
    labels = torch.tensor([2, 0, 1][:batch])
    params = {k: p for k, p in model.named_parameters() if p.requires_grad}

    out = model.forward_train(images)
    frozen_image, frozen_text = model.frozen_features(images)
    ours = mmrl_loss(out, labels, frozen_image, frozen_text, 0.7, 2.0)
    ours.update(logits=out.logits, logits_rep=out.logits_rep, logits_fused=out.logits_fused)
    ours["loss"].backward()
    grads = {k: p.grad.clone() for k, p in params.items()}
    model.zero_grad()

    ref = official_step(model, images, labels, 0.7, 2.0)
    ref["loss"].backward()
    for key in ("logits", "logits_rep", "logits_fused", "ce", "ce_rep", "reg_image", "reg_text", "loss"):
        torch.testing.assert_close(ours[key], ref[key], rtol=1e-4, atol=1e-4, msg=f"{kind} {key}")
    for k, p in params.items():
        torch.testing.assert_close(grads[k], p.grad, rtol=1e-3, atol=1e-5 * float(p.grad.abs().max()) + 1e-8,
                                   msg=f"{kind} grad {k}")
    assert all(g.abs().sum() > 0 for g in grads.values())  # every learnable tensor is reached
    if not evaluate:
        return
    with torch.no_grad():  # evaluation: cached text features, fused or class logits
        model.eval_fused = True
        with model.cached_text_features():
            torch.testing.assert_close(model(images), ref["logits_fused"], rtol=1e-4, atol=1e-4)
        model.eval_fused = False
        torch.testing.assert_close(model(images), ref["logits"], rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def tiny_attr():
    torch.manual_seed(0)
    return load_clip("tiny-attr", pretrained=False)


@pytest.fixture(scope="module")
def vit_b16():
    torch.manual_seed(0)
    return load_clip("ViT-B/16", pretrained=False)


@pytest.mark.parametrize("kind", ["MMRL", "MMRLpp"])
@pytest.mark.parametrize("layers", [(1, 3), (0, 1)], ids=["layers-2-4", "from-layer-1"])
def test_tiny_attr_equals_the_official_computation(tiny_attr, kind, layers):
    """Representation layers 2 and 4 of 4 text / 6 vision layers: the tokens pass layer 3 and
    vision layers 5-6 untouched, and the text tower pools at EOT + 5. From the first layer on, the
    shared frozen prefix is the embedded input itself."""
    check_against_official(tiny_attr, kind, layers, 48)


@pytest.mark.parametrize("kind", ["MMRL", "MMRLpp"])
def test_vit_b16_equals_the_official_computation(vit_b16, kind):
    check_against_official(vit_b16, kind, tuple(range(5, 12)), 512, batch=1, evaluate=False)


def test_learnable_parameter_counts_on_vit_b16_equal_the_official_models(vit_b16):
    """Counted from the official module definitions (ViT-B/16: vision width 768, text width 512,
    embed 512; REP_DIM 512, 5 tokens, 7 layers; MMRL++ RES_LORA_DIM 4, PROJ_LORA_DIM 64)."""
    v, t, e, r, n, L = 768, 512, 512, 512, 5, 7
    official_mmrl = (
        n * r  # compound_rep_tokens
        + L * (r * v + v) + L * (r * t + t)  # compound_rep_tokens_r2vproj / _r2tproj: L x nn.Linear(rep_dim, width)
        + v * e  # image_encoder.proj_rep
    )
    official_mmrlpp = (
        n * r
        + (v * r + L * (v + v * 4 + 4 * r))  # srra_r2vproj: shared weight; per layer bias, A [v, 4], B [4, r]
        + (t * r + L * (t + t * 4 + 4 * r))  # srra_r2tproj
        + v * 64 + 64 * e  # image_encoder.A [v, 64], image_encoder.B [64, e]
    )
    counts = {}
    for kind in ("MMRL", "MMRLpp"):
        model = MMRLCLIP(vit_b16, ["a photo of a cat."], settings(kind, tuple(range(5, 12)), 512)
                         if kind == "MMRL" else MMRLSettings(5, tuple(range(5, 12)), 512, 0.7, 0.9, True, 4, 64))
        counts[kind] = learnable_counts(model)
        print(f"{kind} (ViT-B/16, official config) learnable parameters: {sum(counts[kind].values()):,} {counts[kind]}")
    assert (vit_b16.vision_width, vit_b16.text_width, vit_b16.embed_dim) == (v, t, e)
    assert sum(counts["MMRL"].values()) == official_mmrl == 4_992_256
    assert sum(counts["MMRLpp"].values()) == official_mmrlpp == 813_312
    assert counts["MMRL"]["proj_rep"] == v * e and counts["MMRLpp"]["representation.to_vision"] == v * r + L * (v + 4 * v + 4 * r)
    assert not any(p.requires_grad for p in vit_b16.parameters())


def test_text_prefix_below_the_first_representation_layer_is_computed_once(tiny_attr, monkeypatch):
    model = MMRLCLIP(tiny_attr, PROMPTS, settings("MMRL", (1, 3), 48))
    calls, real = [], tiny_attr.text_states
    monkeypatch.setattr(tiny_attr, "text_states", lambda *args: calls.append(args[2]) or real(*args))
    first, again = model.text_features(), model.text_features()
    assert calls == [1] and torch.equal(first, again)
    assert torch.equal(first, model.text_features(share_prefix=False))  # the whole tower, the same numbers
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model.text_features()
    assert calls == [1, 1]  # another precision, another prefix


def test_mmrl_maps_start_as_copies_and_mmrlpp_residuals_at_zero(tiny_attr):
    torch.manual_seed(5)
    mmrl = MMRLCLIP(tiny_attr, PROMPTS, settings("MMRL", (1, 2, 3), 48))
    w = mmrl.representation.to_vision.weight
    assert w.shape == (3, 192, 48) and all(torch.equal(w[k], w[0]) for k in range(3))  # the official _get_clones
    assert mmrl.proj_rep.std().item() == pytest.approx(192 ** -0.5, rel=0.05)  # scale * randn, not CLIP's proj
    pp = MMRLCLIP(tiny_attr, PROMPTS, settings("MMRLpp", (1, 2, 3), 48))
    assert torch.equal(pp.projection(), tiny_attr.image_projection) and not pp.proj_rep_up.any()
    aligner = pp.representation.to_text
    assert aligner.weight.shape == (128, 48) and not aligner.up.any() and aligner.down.shape == (3, 128, 4)
    assert all(torch.equal(aligner.bias[k], aligner.bias[0]) for k in range(3))


# ---- evaluation rule ------------------------------------------------------------------------------
def test_official_evaluation_rule_per_task():
    assert scores_fused("B2N", "base", "DescribableTextures")  # base classes: class + representation
    assert not scores_fused("B2N", "new", "DescribableTextures")  # new classes: class features alone
    assert not scores_fused("B2N", "all", "ImageNet")
    assert scores_fused("FS", "all", "EuroSAT") and scores_fused("FS", "all", "ImageNet")
    assert scores_fused("CD", "all", "ImageNet")  # the source
    for target in ("EuroSAT", "ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR"):
        assert not scores_fused("CD", "all", target), target
    with pytest.raises(ConfigError, match="TASK must be one of B2N, FS, CD"):
        scores_fused("XD", "all", "ImageNet")


# ---- per-dataset settings (the official trainers/config.py, transcribed independently) -------------
OFFICIAL_MMRL = {  # every TASK
    "StanfordCars": {"REG_WEIGHT": 7.0}, "FGVCAircraft": {"REG_WEIGHT": 6.0}, "SUN397": {"REG_WEIGHT": 6.0},
    "DescribableTextures": {"REG_WEIGHT": 6.0}, "Food101": {"REG_WEIGHT": 5.0}, "OxfordFlowers": {"REG_WEIGHT": 4.0},
    "UCF101": {"REG_WEIGHT": 3.0}, "ImageNet": {"REG_WEIGHT": 0.5}, "Caltech101": {"REG_WEIGHT": 0.5},
    "OxfordPets": {"REG_WEIGHT": 0.2}, "EuroSAT": {"REP_DIM": 2048, "REG_WEIGHT": 0.01},
}
OFFICIAL_MMRLPP_B2N_FS = {
    "ImageNet": {"BETA": 0.9, "REG_WEIGHT": 0.2}, "FGVCAircraft": {"BETA": 0.9, "REG_WEIGHT": 2.0},
    "UCF101": {"BETA": 0.9, "REG_WEIGHT": 3.0}, "DescribableTextures": {"BETA": 0.9, "REG_WEIGHT": 7.0},
    "OxfordPets": {"BETA": 0.7, "REG_WEIGHT": 0.01}, "StanfordCars": {"BETA": 0.7, "REG_WEIGHT": 6.0},
    "Caltech101": {"BETA": 0.6, "REG_WEIGHT": 3.0}, "SUN397": {"BETA": 0.5, "REG_WEIGHT": 3.0},
    "OxfordFlowers": {"BETA": 0.4, "REG_WEIGHT": 7.0}, "EuroSAT": {"BETA": 0.2, "REG_WEIGHT": 0.01},
    "Food101": {"BETA": 0.1, "REG_WEIGHT": 1.0},
}
OFFICIAL_MMRLPP_CD = {
    "ImageNet": {"BETA": 0.9, "REG_WEIGHT": 0.1}, "ImageNetV2": {"BETA": 0.9}, "ImageNetR": {"BETA": 0.9},
    "ImageNetA": {"BETA": 0.8}, "ImageNetSketch": {"BETA": 0.7}, "FGVCAircraft": {"BETA": 0.9},
    "UCF101": {"BETA": 0.9}, "SUN397": {"BETA": 0.7}, "OxfordPets": {"BETA": 0.6}, "Caltech101": {"BETA": 0.6},
    "DescribableTextures": {"BETA": 0.5}, "OxfordFlowers": {"BETA": 0.4}, "StanfordCars": {"BETA": 0.3},
    "EuroSAT": {"BETA": 0.3}, "Food101": {"BETA": 0.3},
}
DATASET_FILES = {"ImageNet": "imagenet", "Caltech101": "caltech101", "OxfordPets": "oxford_pets",
                 "StanfordCars": "stanford_cars", "OxfordFlowers": "oxford_flowers", "Food101": "food101",
                 "FGVCAircraft": "fgvc_aircraft", "SUN397": "sun397", "DescribableTextures": "dtd",
                 "EuroSAT": "eurosat", "UCF101": "ucf101", "ImageNetV2": "imagenetv2",
                 "ImageNetSketch": "imagenet_sketch", "ImageNetA": "imagenet_a", "ImageNetR": "imagenet_r"}


def resolved(trainer, dataset, config, *opts):
    return setup_cfg(parse_args([
        "--trainer", trainer, "--dataset-config-file", f"configs/datasets/{DATASET_FILES[dataset]}.yaml",
        "--config-file", f"configs/trainers/{trainer}/{config}.yaml", *opts]))


def node_values(cfg, trainer, keys):
    return {k: cfg.TRAINER[trainer][k] for k in keys}


@pytest.mark.parametrize("trainer,task,config,table,untouched", [
    ("MMRL", "B2N", "vit_b16", OFFICIAL_MMRL, {"REG_WEIGHT": 1.0, "REP_DIM": 512}),
    ("MMRL", "FS", "vit_b16_few_shot", OFFICIAL_MMRL, {"REG_WEIGHT": 0.5, "REP_DIM": 512}),
    ("MMRL", "CD", "vit_b16_cross_datasets", OFFICIAL_MMRL, {"REG_WEIGHT": 0.2, "REP_DIM": 512}),
    ("MMRLpp", "B2N", "vit_b16", OFFICIAL_MMRLPP_B2N_FS, {"BETA": 0.9, "REG_WEIGHT": 1.0}),
    ("MMRLpp", "FS", "vit_b16_few_shot", OFFICIAL_MMRLPP_B2N_FS, {"BETA": 0.9, "REG_WEIGHT": 1.0}),
    ("MMRLpp", "CD", "vit_b16_cross_datasets", OFFICIAL_MMRLPP_CD, {"BETA": 0.9, "REG_WEIGHT": 0.2}),
])
def test_per_dataset_settings_resolve_to_the_official_values(trainer, task, config, table, untouched):
    for dataset in DATASET_FILES:
        cfg = resolved(trainer, dataset, config, "TASK", task)
        expected = {**untouched, **table.get(dataset, {})}
        assert node_values(cfg, trainer, expected) == expected, (dataset, task)


def test_command_line_wins_and_the_log_names_the_settings(tmp_path, capsys):
    cfg = resolved("MMRL", "EuroSAT", "vit_b16_cross_datasets", "TASK", "CD", "TRAINER.MMRL.REP_DIM", "512")
    assert (cfg.TRAINER.MMRL.REP_DIM, cfg.TRAINER.MMRL.REG_WEIGHT) == (512, 0.01)  # the official xd_test: 512
    cfg = resolved("MMRLpp", "ImageNet", "vit_b16_cross_datasets", "TRAINER.MMRLpp.REG_WEIGHT", "0.3", "TASK", "CD")
    assert (cfg.TRAINER.MMRLpp.BETA, cfg.TRAINER.MMRLpp.REG_WEIGHT) == (0.9, 0.3)  # TASK read after the settings' keys
    trainer = object.__new__(MMRL)
    trainer.cfg = resolved("MMRL", "EuroSAT", "vit_b16", "TRAINER.MMRL.REG_WEIGHT", "2.0")
    trainer.report_dataset_settings()
    assert ("MMRL per-dataset settings (official trainers/config.py) for EuroSAT, TASK B2N: REP_DIM 2048; "
            "REG_WEIGHT 0.01, overridden on the command line: 2.0") in capsys.readouterr().out
    with pytest.raises(ConfigError, match="TASK must be one of B2N, FS, CD"):
        resolved("MMRLpp", "ImageNet", "vit_b16", "TASK", "b2n")


# ---- train.py end to end -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_caltech_like(tmp_path_factory.mktemp("data"))


def argv(root, out, trainer, *extra, sub="base", opts=()):
    return [
        "--root", str(root), "--seed", "1", "--trainer", trainer,
        "--dataset-config-file", "configs/datasets/caltech101.yaml",
        "--config-file", f"configs/trainers/{trainer}/vit_b16.yaml", "--output-dir", str(out), *extra,
        "MODEL.BACKBONE.NAME", "tiny-test", "MODEL.BACKBONE.PRETRAINED", "False",
        "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TEST.BATCH_SIZE", "8",
        "OPTIM.MAX_EPOCH", "1", "DATASET.SUBSAMPLE_CLASSES", sub, "TASK", "B2N",
        f"TRAINER.{trainer}.PREC", "fp32", f"TRAINER.{trainer}.REP_LAYERS", "[1, 2]", f"TRAINER.{trainer}.REP_DIM", "16",
        *opts,
    ]


KEYS = {
    "MMRL": {"proj_rep", "representation.latent", *(f"representation.to_{t}.{p}" for t in ("vision", "text")
                                                      for p in ("weight", "bias"))},
    "MMRLpp": {"proj_rep_down", "proj_rep_up", "representation.latent",
               *(f"representation.to_{t}.{p}" for t in ("vision", "text") for p in ("weight", "bias", "down", "up"))},
}


@pytest.mark.parametrize("trainer", ["MMRL", "MMRLpp"])
def test_base_training_then_new_classes_by_the_class_features(data_root, tmp_path, trainer):
    base = tmp_path / "base"
    main(argv(data_root, base, trainer))
    log = (base / "log.txt").read_text()
    assert f"{trainer} per-dataset settings (official trainers/config.py) for Caltech101, TASK B2N: " in log
    assert "Evaluation logits (TASK B2N, base classes of Caltech101): fused class + representation" in log
    assert " ce_rep " in log and " reg_text " in log
    state = torch.load(base / trainer.lower() / "model.pth.tar-1", weights_only=False)["state_dict"]
    assert set(state) == KEYS[trainer]  # nothing of CLIP, nothing class-dependent
    new = tmp_path / "new"
    main(argv(data_root, new, trainer, "--eval-only", "--model-dir", str(base), "--load-epoch", "1", sub="new"))
    assert "Evaluation logits (TASK B2N, new classes of Caltech101): class features only" in (new / "log.txt").read_text()
    assert json.loads((new / "results.json").read_text())["config"]["TASK"] == "B2N"


def test_new_classes_score_the_class_logits_and_base_classes_the_fused_ones(data_root, tmp_path):
    new = MMRL(setup_cfg(parse_args(argv(data_root, tmp_path / "n", "MMRL", sub="new"))))
    base = MMRL(setup_cfg(parse_args(argv(data_root, tmp_path / "b", "MMRL"))))
    target = MMRL(setup_cfg(parse_args(argv(data_root, tmp_path / "t", "MMRL", sub="all", opts=("TASK", "CD")))))
    few = MMRL(setup_cfg(parse_args(argv(data_root, tmp_path / "f", "MMRL", sub="all", opts=("TASK", "FS")))))
    images = torch.randn(3, 3, 32, 32)
    for trainer, key in ((new, "logits"), (base, "logits_fused"), (target, "logits"), (few, "logits_fused")):
        model = trainer.model
        model.load_state_dict(base.model.state_dict())
        with torch.no_grad():
            want = getattr(model.forward_train(images), key)
            with trainer.evaluation_context():
                torch.testing.assert_close(trainer.model_inference(images), want)
    assert not new.model.eval_fused and base.model.eval_fused and not target.model.eval_fused and few.model.eval_fused


def test_config_errors_say_how_to_fix(data_root, tmp_path):
    with pytest.raises(ConfigError, match=r"TRAINER.MMRL.REP_LAYERS must be increasing 1-based layers that both "
                                          r"towers have \(1..2 here\), got \[2, 3\]"):
        MMRL(setup_cfg(parse_args(argv(data_root, tmp_path / "e", "MMRL", opts=("TRAINER.MMRL.REP_LAYERS", "[2, 3]")))))
    with pytest.raises(ConfigError, match=r"BETA must be in \[0, 1\]"):
        MMRLpp(setup_cfg(parse_args(argv(data_root, tmp_path / "e", "MMRLpp", opts=("TRAINER.MMRLpp.BETA", "1.5")))))


@pytest.mark.parametrize("trainer", ["MMRL", "MMRLpp"])
def test_configs_merge_and_the_tiny_config_fits_tiny_attr(trainer, tiny_attr):
    from engine.config import get_cfg, merge_file
    from trainers.mmrl import representation_layers
    names = sorted(p.stem for p in (REPO / "configs" / "trainers" / trainer).glob("*.yaml"))
    assert names == ["tiny_ep10_batch4", "vit_b16", "vit_b16_cross_datasets", "vit_b16_few_shot", "vit_b16_imagenet"]
    for name in names:
        cfg = get_cfg()
        merge_file(cfg, str(REPO / "configs" / "trainers" / trainer / f"{name}.yaml"))
        node = cfg.TRAINER[trainer]
        if name.startswith("tiny"):
            assert cfg.MODEL.BACKBONE.NAME == "tiny-attr" and tuple(cfg.INPUT.SIZE) == (tiny_attr.image_size,) * 2
            layers = representation_layers(tiny_attr, node.REP_LAYERS, trainer)
            assert layers == (2, 3) and node.PREC == "fp32"
        else:
            assert list(node.REP_LAYERS) == list(range(6, 13)) and node.PREC == "amp" and node.N_REP_TOKENS == 5


@pytest.mark.parametrize("trainer", ["MMRL", "MMRLpp"])
def test_scripts_name_the_task_the_configs_and_the_official_options(fake_python, trainer):
    import os
    import subprocess
    stub, log = fake_python

    def calls(script, *args, env=None):
        log.unlink(missing_ok=True)
        subprocess.run(["bash", str(REPO / "scripts" / trainer.lower() / script), *args], check=True,
                       env={**os.environ, "PYTHON": str(stub), "DATA": "/data/x", **(env or {})}, capture_output=True)
        return log.read_text().splitlines()

    (train,) = calls("base2new_train.sh", "dtd", "1")
    (test,) = calls("base2new_test.sh", "dtd", "1")
    (imagenet,) = calls("base2new_test.sh", "imagenet", "1")
    base = f"output/base2new/train_base/dtd/shots_16/{trainer}/vit_b16/seed1"
    assert f"--output-dir {base} --skip-finished --seed 1 --trainer {trainer} " in train
    assert train.endswith(f"--config-file configs/trainers/{trainer}/vit_b16.yaml DATASET.NUM_SHOTS 16 "
                          "DATASET.SUBSAMPLE_CLASSES base TASK B2N")
    assert f"--model-dir {base} --load-epoch 10 --eval-only" in test and test.endswith("SUBSAMPLE_CLASSES new TASK B2N")
    assert f"{trainer}/vit_b16_imagenet.yaml" in imagenet and "--load-epoch 5 " in imagenet
    (xd_train,) = calls("xd_train.sh", "2")
    (xd_test,) = calls("xd_test.sh", "eurosat", "2")
    source = f"output/cross_dataset/train/imagenet/shots_16/{trainer}/vit_b16_cross_datasets/seed2"
    xd_opts = {"MMRL": (" TRAINER.MMRL.REG_WEIGHT 0.2", " TRAINER.MMRL.REG_WEIGHT 0.2 TRAINER.MMRL.REP_DIM 512"),
               "MMRLpp": ("", "")}[trainer]
    assert f"--output-dir {source} " in xd_train and xd_train.endswith("DATASET.NUM_SHOTS 16 TASK CD" + xd_opts[0])
    assert f"--model-dir {source} --load-epoch 1 --eval-only TASK CD{xd_opts[1]}" in xd_test
    assert xd_test.endswith(f"TASK CD{xd_opts[1]}") and "configs/datasets/eurosat.yaml" in xd_test
    one, sixteen = calls("few_shot.sh", "imagenet", "3", env={"SHOTS_LIST": "1 16"})
    assert f"few_shot/imagenet/shots_1/{trainer}/vit_b16_imagenet/seed3" in one and one.endswith("NUM_SHOTS 1 TASK FS")
    assert sixteen.endswith("DATASET.NUM_SHOTS 16 TASK FS")
    (dtd,) = calls("few_shot.sh", "dtd", "3", env={"SHOTS_LIST": "4"})
    assert f"{trainer}/vit_b16_few_shot.yaml" in dtd
