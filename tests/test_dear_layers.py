"""DeAR tests that tell the deep layers apart: a role map whose layers differ, so that masks applied
to the wrong layer (a reversed stack, an off-by-one with FIRST_MASKED_LAYER J+1) fail; a random-init
backbone's role map bound to its seed; SBERT + HDBSCAN on a labelled pool, end to end."""
import json
from collections import Counter

import pytest
import torch

from headroles.rolemap import HeadRole, parse_role_map
from tests.minidata import make_caltech_like
from train import main, parse_args, setup_cfg
from trainers.dear.masks import head_blocked, role_masks
from trainers.dear.trainer import DeAR

ATTRS = ("color", "shape", "texture", "object", "position")
N_ORIG = 17  # tiny-test: class token + 4x4 patches
LAYER_ROLES = {  # 1-based layer -> roles of heads 0..3, different in each layer
    1: [{"role": "generalization"}, {"role": "generalization"}, {"role": "mixed"}, {"role": "attribute", "attribute": "color"}],
    2: [{"role": "mixed"}, {"role": "attribute", "attribute": "shape"}, {"role": "generalization"}, {"role": "mixed"}],
}


def layered_map(path):
    heads = [{"layer": layer, "head": h, **r} for layer, roles in LAYER_ROLES.items() for h, r in enumerate(roles)]
    path.write_text(json.dumps({"backbone": "tiny-test", "heads": heads}))
    return path


def expected_mask(layer):
    """The additive mask of a layer, head by head from its roles (not through role_masks)."""
    blocked = torch.stack([head_blocked(HeadRole(layer, h, r["role"], r.get("attribute")), ATTRS, N_ORIG, "role")
                           for h, r in enumerate(LAYER_ROLES[layer])])
    return torch.zeros(blocked.shape).masked_fill(blocked, float("-inf"))


def test_masks_are_stacked_in_layer_order():
    rm = parse_role_map(json.loads(json.dumps({"heads": [
        {"layer": layer, "head": h, **r} for layer, roles in LAYER_ROLES.items() for h, r in enumerate(roles)]})), "m")
    masks = role_masks(rm, [1, 2], 4, ATTRS, N_ORIG, "role")
    assert not torch.equal(expected_mask(1), expected_mask(2))  # the layers can be told apart
    assert torch.equal(masks[0], expected_mask(1)) and torch.equal(masks[1], expected_mask(2))


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_caltech_like(tmp_path_factory.mktemp("data"))


def argv(root, out, *opts, seed=1, flags=()):
    return ["--root", str(root), "--seed", str(seed), "--trainer", "DeAR", *flags,
            "--dataset-config-file", "configs/datasets/caltech101.yaml",
            "--config-file", "configs/trainers/DeAR/vit_b16.yaml", "--output-dir", str(out),
            "MODEL.BACKBONE.NAME", "tiny-test", "MODEL.BACKBONE.PRETRAINED", "False", "INPUT.SIZE", "(32, 32)",
            "DATALOADER.NUM_WORKERS", "0", "TRAINER.DEAR.PREC", "fp32", "TRAINER.DEAR.J", "1", *opts]


@pytest.mark.parametrize("first, masked", [("J", {0: 1, 1: 2}), ("J+1", {1: 2})])
def test_each_layer_gets_its_own_roles(data_root, tmp_path, first, masked):
    """The hooks of the built model mask block i (0-based) with the roles of layer i + 1, also when
    the masks start one layer after the tokens (FIRST_MASKED_LAYER J+1)."""
    trainer = DeAR(setup_cfg(parse_args(argv(data_root, tmp_path, "TRAINER.DEAR.ROLE_MAP", str(layered_map(tmp_path / "m.json")),
                                             "TRAINER.DEAR.FIRST_MASKED_LAYER", first))))
    hooks = trainer.model.vision_hooks()
    assert set(hooks.head_masks) == set(masked)
    for block, layer in masked.items():
        assert torch.equal(hooks.head_masks[block], expected_mask(layer)), (block, layer)


def test_a_random_init_role_map_is_its_seeds(data_root, tmp_path, monkeypatch, capsys):
    """ROLE_MAP global on random-init weights: the weights are the seed's, so each seed analyses its
    own backbone (the fingerprint `random-init:tiny-test` is the same for all of them)."""
    monkeypatch.setenv("PROMPTLAB_CACHE", str(tmp_path / "cache"))
    images = data_root / "caltech-101" / "101_ObjectCategories"
    opts = ("TRAINER.DEAR.ROLE_MAP", "global", "TRAINER.DEAR.ANALYSIS_IMAGES", str(images),
            "TRAINER.DEAR.ANALYSIS_N_TEXTS", "4")
    keys = []
    for seed in (1, 2, 1):
        main(argv(data_root, tmp_path / f"run{seed}-{len(keys)}", *opts, seed=seed, flags=["--no-train"]))
        keys.append(json.loads((tmp_path / f"run{seed}-{len(keys)}" / "role_map.json").read_text())["cache_key"])
    out = capsys.readouterr().out
    assert out.count("computing the head analysis of tiny-test once") == 2 and out.count("using the cached analysis") == 1
    assert [k["scope"] for k in keys] == [{"kind": "global", "seed": 1}, {"kind": "global", "seed": 2},
                                          {"kind": "global", "seed": 1}]
    assert keys[0]["weights"] == keys[1]["weights"] == "random-init:tiny-test"
    assert len(list((tmp_path / "cache" / "head_roles").glob("tiny-test__global__*.json"))) == 2


def test_hdbscan_on_a_labelled_pool_names_each_cluster_by_its_majority_label(tmp_path, attr_color_shape_root, capsys):
    """The paper's concept step (real all-MiniLM-L6-v2 + HDBSCAN) on our labelled pool: every cluster is
    named by the majority label of its texts, and heads dominated by a core attribute's cluster
    become that attribute's heads."""
    import tools.head_roles as tool
    from headroles.pool import read_pool

    out = tmp_path / "roles.json"
    payload = tool.main(["--backbone", "tiny-attr", "--images", "configs/datasets/attr_color_shape.yaml", "--root",
                         str(attr_color_shape_root), "--split", "train", "--max-images", "16", "--layers", "5-6",
                         "--cluster", "hdbscan", "--attributes", "color", "shape", "texture", "size", "position",
                         "--no-cache", "--out", str(out)])
    labels = dict(zip(read_pool().texts, read_pool().labels))
    clusters = payload["clusters"]
    assert clusters["method"] == "hdbscan" and clusters["count"] == len(payload["concepts"]) >= 2
    members = {}
    for head in payload["heads"]:
        for t in head["top_texts"]:
            if t["concept"] is not None:
                members.setdefault(t["concept"], set()).add(t["text"])
    assert members and set(members) <= set(payload["concepts"])
    for name, texts in members.items():
        votes = Counter(labels[t] for t in texts)
        assert votes[clusters["named"][name]] == max(votes.values()), (name, votes)  # the majority label
        assert name.split(" (")[0] == clusters["named"][name]
    attribute_heads = [h for h in payload["heads"] if h["role"] == "attribute"]
    assert attribute_heads
    for head in attribute_heads:
        label = clusters["named"].get(head["dominant_concept"])
        assert head["attribute"] == label and label in payload["attributes"]
    assert "HDBSCAN clusters: " in capsys.readouterr().out
