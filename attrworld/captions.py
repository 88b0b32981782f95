"""Captions: varied templates that always name the shape and some of the other attributes.

The shape is always named because a caption without it would let contrastive training
ignore shape (shared/notes/attribute-world-prototype.md); other attributes appear with
probability `P_MENTION`, so the text tower learns each word on its own, in any company.
"""
from __future__ import annotations

import numpy as np

from attrworld.spec import Attributes

P_MENTION = {"color": 0.75, "texture": 0.6, "size": 0.5, "position": 0.4}
POSITION_PHRASE = {
    "center": "in the center",
    "top left": "in the top left corner",
    "top right": "in the top right corner",
    "bottom left": "in the bottom left corner",
    "bottom right": "in the bottom right corner",
}

# {a} is the indefinite article of what follows, {adj} the adjectives (size, colour, texture),
# {pos} the position phrase with a leading space (or nothing).
TEMPLATES = (
    "a photo of {a} {adj}{shape}{pos}.",
    "{a} {adj}{shape}{pos}.",
    "there is {a} {adj}{shape}{pos}.",
    "an image of {a} {adj}{shape}{pos} on a gray background.",
    "a picture showing {a} {adj}{shape}{pos}.",
    "a rendering of {a} {adj}{shape}{pos}.",
    "{adj}{shape}{pos}",
)


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def describe(attrs: Attributes, mentioned: set[str], template: str) -> str:
    """Fill `template` with the shape and the `mentioned` attributes of `attrs`."""
    adjectives = [getattr(attrs, name) for name in ("size", "color", "texture") if name in mentioned]
    adj = "".join(f"{word} " for word in adjectives)
    pos = f" {POSITION_PHRASE[attrs.position]}" if "position" in mentioned else ""
    first = (adj or attrs.shape).split()[0]
    return template.format(a=article(first), adj=adj, shape=attrs.shape, pos=pos)


def caption(attrs: Attributes, rng: np.random.Generator) -> tuple[str, set[str]]:
    """A random caption of `attrs` and the set of attribute names it mentions (shape always)."""
    mentioned = {name for name, p in P_MENTION.items() if rng.random() < p} | {"shape"}
    template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    return describe(attrs, mentioned, template), mentioned
