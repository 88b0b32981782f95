"""Human-readable views of a role map: a tabulate table and an entropy heatmap PNG (Pillow)."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from tabulate import tabulate

from engine.io import atomic_write, atomic_write_text
from headroles.rolemap import ATTRIBUTE, GENERALIZATION, MIXED

ROLE_COLORS = {ATTRIBUTE: (230, 120, 30), MIXED: (120, 150, 90), GENERALIZATION: (50, 100, 200)}
CELL_W, CELL_H, MARGIN = 78, 44, 70


def table(payload: dict, texts: int = 3) -> str:
    rows = []
    for e in payload["heads"]:
        top = "; ".join(t["text"] for t in e["top_texts"][:texts])
        role = e["role"] + (f" ({e['attribute']})" if e.get("attribute") else "")
        rows.append([e["layer"], e["head"], f"{e['entropy']:.2f}", f"{e['normalized_entropy']:.2f}", role,
                     e.get("dominant_concept") or "-", top])
    return tabulate(rows, headers=["layer", "head", "H (bits)", "H norm", "role", "dominant", f"top {texts} texts"])


def summary(payload: dict) -> str:
    roles = Counter(e["role"] for e in payload["heads"])
    attrs = Counter(e["attribute"] for e in payload["heads"] if e["role"] == ATTRIBUTE)
    cuts = payload["thresholds"]
    rows = [[r, roles.get(r, 0)] for r in (ATTRIBUTE, MIXED, GENERALIZATION)]
    rows += [[f"  {ATTRIBUTE}: {a}", n] for a, n in sorted(attrs.items())]
    head = (f"{len(payload['heads'])} heads, layers {payload['layers']}; thresholds {cuts['mode']} "
            f"(low <= {cuts['low_cut']:.3f}, high >= {cuts['high_cut']:.3f} normalised entropy)")
    return head + "\n" + concept_line(payload) + "\n" + tabulate(rows, headers=["role", "heads"])


def concept_line(payload: dict) -> str:
    """How many concepts the analysis found, and how (e.g. HDBSCAN's cluster count and noise)."""
    c = payload.get("clusters")
    if not c:
        return f"{len(payload['concepts'])} concepts"
    core = sorted({label for label in c["named"].values() if label in payload["attributes"]})
    line = f"{c['count']} concepts ({c['method']}), {len(core)} of them core attributes ({', '.join(core) or 'none'})"
    if c["method"] == "hdbscan":
        line += f"; HDBSCAN clusters: {c['count']}, noise: {c['noise_texts']} of {c['texts']} distinct texts"
    return line


def _shade(color: tuple[int, int, int], entropy: float) -> tuple[int, int, int]:
    """Lower entropy -> more saturated cell."""
    t = 0.25 + 0.6 * min(max(entropy, 0.0), 1.0)
    return tuple(int(c + (255 - c) * t) for c in color)


def heatmap(payload: dict, path: str | Path) -> Path:
    """Normalised entropy by layer (rows) and head (columns), each cell coloured by role."""
    layers, n_heads = payload["layers"], payload["heads_per_layer"]
    width, height = max(MARGIN + CELL_W * n_heads + 10, 480), MARGIN + CELL_H * len(layers) + 40
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=11)
    draw.text((10, 8), f"Concept Entropy by head ({payload.get('backbone', '')}); colour = role, text = H norm", fill="black", font=font)
    for col in range(n_heads):
        draw.text((MARGIN + col * CELL_W + CELL_W // 3, MARGIN - 18), f"h{col}", fill="black", font=font)
    for row, layer in enumerate(layers):
        draw.text((10, MARGIN + row * CELL_H + CELL_H // 3), f"layer {layer}", fill="black", font=font)
    for e in payload["heads"]:
        row, col = layers.index(e["layer"]), e["head"]
        x0, y0 = MARGIN + col * CELL_W, MARGIN + row * CELL_H
        draw.rectangle([x0, y0, x0 + CELL_W - 2, y0 + CELL_H - 2], fill=_shade(ROLE_COLORS[e["role"]], e["normalized_entropy"]))
        label = e["attribute"] or e["role"][:3]
        draw.text((x0 + 4, y0 + 4), f"{e['normalized_entropy']:.2f}", fill="black", font=font)
        draw.text((x0 + 4, y0 + 22), label[:11], fill="black", font=font)
    y = height - 28
    for i, (role, color) in enumerate(ROLE_COLORS.items()):
        draw.rectangle([10 + i * 150, y, 26 + i * 150, y + 14], fill=color)
        draw.text((32 + i * 150, y), role, fill="black", font=font)
    path = Path(path)
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))
    return path


def save_role_map(payload: dict, out: str | Path) -> tuple[Path, Path]:
    """The role map JSON and its heatmap PNG beside it (the PNG first: a JSON on disk means both
    are complete)."""
    out = Path(out)
    png = heatmap(payload, out.with_suffix(".png"))
    atomic_write_text(out, json.dumps(payload, indent=1))
    print(f"Role map: {out}\nHeatmap: {png}")
    return out, png


def show(payload: dict) -> None:
    """Print the per-head table, the concepts found and the role counts."""
    print(table(payload))
    print(summary(payload))
