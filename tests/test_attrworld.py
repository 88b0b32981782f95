"""The attribute world: renderer, captions, derived datasets and the committed tiny-attr CLIP."""
from __future__ import annotations

import importlib.util
import io
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import datasets.attribute_world  # noqa: F401  (registers the Attr* datasets)
from attrworld import derived
from attrworld.captions import POSITION_PHRASE, caption
from attrworld.render import render, shift_hue
from attrworld.sampling import training_batch
from attrworld.spec import ATTRIBUTES, COLORS, Attributes, sample_attributes
from attrworld.zeroshot import load_images, load_tiny_attr, predict
from backbone.model_configs import WEIGHTS_DIR, build_model, read_config
from engine.data.base import DATASET_REGISTRY
from engine.errors import DataError
from tests.replica import load as load_dataset

REPO = Path(__file__).resolve().parents[1]

# Zero-shot of the committed weights on the first ZS_PER_CLASS test images of every
# AttrColorShape class ("a photo of a {}.", 64-way), as recorded in docs/TINY_CLIP.md.
# The images are bit-identical by construction and the forward pass is deterministic, so the
# count is exact: the smallest top-1/top-2 logit margin in the subset is 1.2e-4, two orders
# above the ~1e-6 a different BLAS or thread count moves a logit, and an fp64 forward gives
# the same count. Only images with a margin under NEAR_TIE could flip, so the count may move
# by as many of those as a run finds (none here).
ZS_PER_CLASS = 4
ZS_SUBSET_CORRECT = 214
NEAR_TIE = 1e-4


def png_bytes(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def test_same_seed_renders_same_bytes_and_other_seeds_differ():
    attrs = Attributes("star", "cyan", "striped", "small", "top right")
    first = png_bytes(render(attrs, np.random.default_rng(7))[0])
    assert png_bytes(render(attrs, np.random.default_rng(7))[0]) == first
    assert png_bytes(render(attrs, np.random.default_rng(8))[0]) != first


def test_rendered_object_has_its_colour_where_its_position_says():
    """Sanity of the picture itself: the object's colour dominates its quadrant."""
    attrs = Attributes("square", "red", "solid", "large", "bottom left")
    image = np.asarray(render(attrs, np.random.default_rng(0))[0]).astype(int)
    redness = image[..., 0] - image[..., 1:].mean(-1)
    quadrant = redness[32:, :32].mean()
    others = [redness[:32, :32].mean(), redness[:32, 32:].mean(), redness[32:, 32:].mean()]
    assert quadrant > 40 and max(others) < quadrant / 3


def test_hue_shift_turns_the_object_colour_and_zero_keeps_the_pixels():
    """A 25-degree cast makes pure red (hue 0) read as orange-red (hue 25 +- one 8-bit step)."""
    image = render(Attributes("square", "red", "solid", "large", "center"), np.random.default_rng(0))[0]
    assert shift_hue(image, 0.0) is image
    hsv_before = np.asarray(image.convert("HSV")).astype(int)
    hsv_after = np.asarray(shift_hue(image, 25.0).convert("HSV")).astype(int)
    centre = (slice(28, 36), slice(28, 36))
    assert np.median(hsv_before[centre][..., 0]) <= 2
    assert abs(np.median(hsv_after[centre][..., 0]) * 360 / 256 - 25) < 3
    assert png_bytes(shift_hue(image, 25.0)) == png_bytes(shift_hue(image, 25.0))


def _mentions(text: str) -> dict[str, set[str]]:
    """Every attribute value named in a caption, found by whole-word / whole-phrase match."""
    found = {name: {v for v in values if re.search(rf"\b{v}\b", text)} for name, values in ATTRIBUTES.items()}
    found["position"] = {p for p, phrase in POSITION_PHRASE.items() if phrase in text}
    return found


def test_every_caption_names_its_shape_and_only_true_attribute_values():
    rng = np.random.default_rng(0)
    mentioned_counts = {name: 0 for name in ATTRIBUTES}
    for _ in range(3000):
        attrs = sample_attributes(rng)
        text, mentioned = caption(attrs, rng)
        found = _mentions(text)
        for name in ATTRIBUTES:
            expected = {getattr(attrs, name)} if name in mentioned else set()
            assert found[name] == expected, (text, attrs, name)
            mentioned_counts[name] += bool(found[name])
        for art, word in re.findall(r"\b(an?) (\w+)", text):
            assert art == ("an" if word[0] in "aeiou" else "a"), text
    assert mentioned_counts["shape"] == 3000
    assert all(300 < n < 3000 for name, n in mentioned_counts.items() if name != "shape"), mentioned_counts


def test_training_batches_are_reproducible_with_distinct_captions():
    images, captions, attrs = training_batch(seed=3, step=5, batch_size=48)
    again, captions_again, _ = training_batch(seed=3, step=5, batch_size=48)
    assert np.array_equal(images, again) and captions == captions_again
    assert len(set(captions)) == len(captions)
    kinds = []
    for step in range(16):
        batch = training_batch(3, step, 48)[2]
        kinds.append(tuple(len({getattr(a, name) for a in batch}) for name in ("color", "texture", "size")))
    assert sum(c <= 3 for c, _, _ in kinds) >= 10, kinds  # colour must rarely be enough (85% of batches)
    assert any(c <= 2 and t <= 2 and s == 1 for c, t, s in kinds), kinds  # shape-focused batches
    assert any(c == len(COLORS) for c, _, _ in kinds), kinds  # and unrestricted ones


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("DATA")


def load(root: Path, name: str, **kwargs):
    return load_dataset(name, root, **kwargs)


@pytest.mark.parametrize("name", list(derived.DATASETS))
def test_derived_dataset_loads_with_coop_sizes_and_ground_truth(data_root, name):
    spec = derived.DATASETS[name]
    n_classes = math.prod(len(ATTRIBUTES[f]) for f in spec.factors)
    n_train, n_val, n_test = spec.per_class
    full = load(data_root, name)
    assert full.num_classes == n_classes and len(set(full.classnames)) == n_classes
    assert (len(full.train_x), len(full.val), len(full.test)) == (n_train * n_classes, n_val * n_classes,
                                                                  n_test * n_classes)
    assert (data_root / spec.dataset_dir / spec.split_file).is_file()
    for datum in full.train_x + full.test:
        truth = full.attributes[datum.impath]
        assert " ".join(truth[f] for f in spec.factors) == datum.classname
        assert Path(datum.impath).parent.name == datum.classname.replace(" ", "_")

    fewshot = load(data_root, name, shots=16)
    assert (len(fewshot.train_x), len(fewshot.val)) == (16 * n_classes, 4 * n_classes)
    assert set(d.impath for d in fewshot.train_x) < set(d.impath for d in full.train_x)

    base = load(data_root, name, subsample="base")
    new = load(data_root, name, subsample="new")
    assert (base.num_classes, new.num_classes) == (math.ceil(n_classes / 2), n_classes // 2)
    assert not set(base.classnames) & set(new.classnames)
    for i, factor in enumerate(spec.factors):
        base_values = {c.split()[i] for c in base.classnames}
        new_values = {c.split()[i] for c in new.classnames}
        if spec.order == "holdout" and i == 0:
            assert not base_values & new_values and base_values | new_values == set(ATTRIBUTES[factor])
        else:
            assert base_values == new_values == set(ATTRIBUTES[factor]), factor


@pytest.mark.parametrize("spec", list(derived.DATASETS.values()), ids=list(derived.DATASETS))
def test_dataset_config_names_the_registered_dataset(spec):
    config = yaml.safe_load((REPO / "configs" / "datasets" / f"{spec.dataset_dir}.yaml").read_text())
    assert config == {"DATASET": {"NAME": spec.name}} and spec.name in DATASET_REGISTRY


def test_colour_shape_base_new_tests_unseen_combinations(data_root):
    base = set(load(data_root, "AttrColorShape", subsample="base").classnames)
    new = set(load(data_root, "AttrColorShape", subsample="new").classnames)
    assert base | new == {f"{c} {s}" for c in COLORS for s in ATTRIBUTES["shape"]}
    for colour in COLORS:
        assert len([c for c in base if c.startswith(colour + " ")]) == 4


TINY = derived.DerivedSpec("AttrTiny", "attr_tiny", ("texture", "shape"), "latin", seed=5, per_class=(2, 1, 1))


def test_generation_is_deterministic_and_reused(tmp_path):
    a, b = derived.generate(TINY, tmp_path / "a"), derived.generate(TINY, tmp_path / "b")
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert len(files) == 4 * 32
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert (a / TINY.split_file).read_text() == (b / TINY.split_file).read_text()
    assert (a / derived.ATTRIBUTES_FILE).read_text() == (b / derived.ATTRIBUTES_FILE).read_text()
    stamp = (a / TINY.split_file).stat().st_mtime_ns
    assert derived.generate(TINY, tmp_path / "a") == a and (a / TINY.split_file).stat().st_mtime_ns == stamp


def test_interrupted_generation_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_render = derived.render

    def failing_render(attrs, rng):
        calls["n"] += 1
        if calls["n"] > 20:
            raise KeyboardInterrupt
        return real_render(attrs, rng)

    monkeypatch.setattr(derived, "render", failing_render)
    with pytest.raises(KeyboardInterrupt):
        derived.generate(TINY, tmp_path)
    assert list(tmp_path.iterdir()) == []
    # A SIGKILL skips the clean-up; its hidden temp folder must not block or fake a dataset.
    (tmp_path / f".{TINY.dataset_dir}.tmp-killed" / "images").mkdir(parents=True)
    monkeypatch.setattr(derived, "render", real_render)
    assert derived.is_complete(TINY, derived.generate(TINY, tmp_path))

    (tmp_path / "half").mkdir()
    (tmp_path / "half" / TINY.dataset_dir).mkdir()
    with pytest.raises(DataError, match="lacks"):
        derived.generate(TINY, tmp_path / "half")


def test_stem_norm_recalibration_keeps_the_function_and_sets_population_stats():
    spec = importlib.util.spec_from_file_location("pretrain", REPO / "tools" / "pretrain_tiny_clip.py")
    pretrain = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pretrain)
    torch.manual_seed(0)
    config = {"embed_dim": 16, "vision_stem": "conv",
              "vision_cfg": {"image_size": 32, "patch_size": 4, "width": 32, "layers": 1, "head_width": 16},
              "text_cfg": {"context_length": 8, "vocab_size": 100, "width": 16, "heads": 1, "layers": 1}}
    model = build_model(config).eval()
    images = (np.random.default_rng(0).random((64, 32, 32, 3)) * 255).astype(np.uint8)
    from attrworld.zeroshot import to_input

    before = model.encode_image(to_input(images)).detach()
    pretrain.recalibrate_stem_norms(model, images)
    after = model.encode_image(to_input(images)).detach()
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
    model.train()  # with population stats, batch stats now normalise (almost) the same way
    torch.testing.assert_close(model.encode_image(to_input(images)).detach(), before, atol=1e-3, rtol=1e-3)


def test_committed_weights_load_into_the_repo_config():
    state = torch.load(WEIGHTS_DIR / "tiny-attr.pt", map_location="cpu", weights_only=True)
    expected = build_model(read_config("tiny-attr")).state_dict()
    assert list(state) == list(expected)
    assert all(state[k].shape == expected[k].shape for k in state)
    build_model(read_config("tiny-attr")).load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    assert (WEIGHTS_DIR / "tiny-attr.pt").stat().st_size < 25 * 2**20


def zs_subset(root: Path):
    dataset = load(root, "AttrColorShape")
    picked = [d for label in range(dataset.num_classes)
              for d in [x for x in dataset.test if x.label == label][:ZS_PER_CLASS]]
    return dataset, picked


def test_committed_weights_reproduce_recorded_zero_shot(data_root):
    dataset, subset = zs_subset(data_root)
    logits = predict(load_tiny_attr(), load_images([d.impath for d in subset]), dataset.classnames)
    labels = torch.tensor([d.label for d in subset])
    correct = int((logits.argmax(1) == labels).sum())
    top2 = logits.topk(2, dim=1).values
    near_ties = int(((top2[:, 0] - top2[:, 1]) < NEAR_TIE).sum())
    assert abs(correct - ZS_SUBSET_CORRECT) <= near_ties, (correct, ZS_SUBSET_CORRECT, near_ties)
    assert correct > 10 * len(subset) / dataset.num_classes  # far above the 1/64 chance level
