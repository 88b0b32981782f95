"""Writes headroles/text_pool.tsv: our labelled pool of short image descriptions.

Each line is `concept<TAB>text`. The texts are compositions of the word lists below (written
for this project) with a few phrasings per concept, deduplicated and sorted, so the file is
reproducible: `python -m headroles.make_pool` rewrites it byte for byte.
"""
from __future__ import annotations

import itertools
import re
from pathlib import Path

POOL_FILE = Path(__file__).with_name("text_pool.tsv")

COLORS = (
    "red", "crimson", "scarlet", "maroon", "burgundy", "orange", "amber", "tangerine", "yellow", "golden",
    "lemon", "lime", "green", "olive", "emerald", "teal", "cyan", "turquoise", "aqua", "blue", "navy",
    "azure", "cobalt", "indigo", "violet", "purple", "lavender", "magenta", "pink", "rose", "coral",
    "peach", "brown", "chocolate", "tan", "beige", "black", "white", "gray", "silver", "ivory", "cream",
    "charcoal", "ochre", "khaki", "mint",
)
COLOR_FORMS = (
    "a {} object", "something {}", "mostly {} tones", "a splash of {}", "bright {} color", "dark {} color",
    "pale {} hue", "the color {}",
)
SHAPES = (
    "circle", "square", "triangle", "star", "heart", "cross", "hexagon", "crescent", "oval", "rectangle",
    "diamond", "pentagon", "octagon", "spiral", "arrow", "ring", "cube", "sphere", "cone", "cylinder",
    "pyramid", "zigzag", "wave", "arch", "teardrop", "semicircle", "trapezoid", "parallelogram", "disc",
    "wedge", "loop", "polygon",
)
SHAPE_FORMS = (
    "a {} shape", "shaped like a {}", "the outline of a {}", "a simple {} form", "a {} silhouette",
    "a flat {}", "a tilted {}", "a thick {} outline",
)
TEXTURES = (
    "striped", "dotted", "checkered", "polka-dotted", "furry", "fluffy", "rough", "smooth", "glossy",
    "grainy", "woven", "knitted", "scaly", "bumpy", "wrinkled", "cracked", "rippled", "speckled",
    "marbled", "plaid", "hatched", "honeycombed", "meshed", "fuzzy", "velvety", "ribbed", "quilted",
    "crinkled", "pitted", "mottled", "spotted", "braided", "corrugated", "frosted", "sandy",
)
TEXTURE_FORMS = (
    "a {} texture", "a {} pattern", "a {} surface", "covered in a {} pattern", "{} all over",
    "a close view of a {} texture", "a fine {} pattern", "a coarse {} texture",
)
OBJECTS = (
    "dog", "cat", "car", "bicycle", "chair", "tree", "flower", "bird", "airplane", "boat", "cup", "lamp",
    "house", "bridge", "horse", "fish", "apple", "banana", "clock", "book", "guitar", "shoe", "umbrella",
    "bottle", "truck", "train", "rabbit", "owl", "butterfly", "teapot", "kite", "balloon", "piano",
    "camera", "laptop", "phone", "sofa", "table", "bed", "cake", "pizza", "sandwich", "hat", "backpack",
    "elephant", "giraffe", "zebra", "bear", "frog", "turtle", "candle", "key", "spoon", "bowl", "vase",
    "motorcycle", "bus", "tractor", "helicopter", "rocket",
)
OBJECT_FORMS = ("a photo of a {}", "a {}", "an image of a {}", "a picture showing a {}", "a {} in the picture")
POSITIONS = (
    "in the top left corner", "in the top right corner", "in the bottom left corner", "in the bottom right corner",
    "in the center", "on the left side", "on the right side", "near the top edge", "near the bottom edge",
    "off to the left", "off to the right", "in the middle of the frame", "at the very top", "at the very bottom",
    "in the upper half", "in the lower half", "slightly off center", "at the edge of the frame",
    "in the far corner", "right in the middle",
)
POSITION_SUBJECTS = (
    "an object", "the subject", "something", "a small thing", "a shape", "the main item", "a figure",
    "the focus", "a lone item", "the target",
)
SIZES = (
    "tiny", "small", "little", "large", "huge", "giant", "big", "miniature", "enormous", "massive",
    "compact", "oversized", "mid-sized", "minuscule", "towering", "petite",
)
SIZE_FORMS = (
    "a {} object", "{} in size", "the object is {}", "a {} item", "something {}", "a {} version of it",
    "a {} one", "it looks {}",
)
SCENES = (
    "beach", "forest", "city street", "kitchen", "office", "desert", "mountain", "snowy field", "coral reef",
    "park", "stadium", "classroom", "library", "harbor", "farm", "airport", "subway station", "garden",
    "living room", "bathroom", "restaurant", "market", "highway", "river bank", "cave", "meadow",
    "parking lot", "playground", "waterfall", "lake",
)
SCENE_FORMS = (
    "a photo taken at a {}", "a {} scene", "somewhere in a {}", "the view of a {}", "a wide shot of a {}",
    "the background is a {}", "a day at the {}",
)
MATERIALS = (
    "wood", "metal", "glass", "plastic", "stone", "paper", "fabric", "leather", "ceramic", "rubber",
    "concrete", "brick", "steel", "copper", "marble", "wool", "cotton", "silk", "clay", "bamboo",
    "cardboard", "wax", "ice", "porcelain",
)
MATERIAL_FORMS = (
    "made of {}", "a {} surface", "{} material", "something built from {}", "a piece of {}",
    "an object of {}", "crafted from {}", "a thing made from {}",
)
COUNTS = ("one", "two", "three", "four", "five", "six", "seven", "several", "many", "a few", "a pair of",
          "a group of", "a dozen", "a crowd of", "a single", "countless", "dozens of", "a couple of")
COUNT_NOUNS = (
    "objects", "items", "people", "birds", "cars", "shapes", "animals", "trees", "balls", "boxes", "coins",
    "flowers", "chairs", "boats",
)
STYLES = (
    "watercolor painting", "pencil sketch", "cartoon", "oil painting", "pixel art", "3d render",
    "black and white photo", "vintage photo", "comic book panel", "mosaic", "embroidery", "origami model",
    "graffiti mural", "charcoal drawing", "ink drawing", "low poly render", "stained glass window",
    "children's drawing", "blueprint", "collage", "woodcut print", "pastel drawing", "anime still",
    "infrared photo", "medical x-ray",
)
STYLE_FORMS = (
    "a {}", "in the style of a {}", "rendered as a {}", "it looks like a {}", "made as a {}",
    "an artwork as a {}", "drawn like a {}",
)
LIGHTING = (
    "bright sunlight", "dim light", "neon lights", "candlelight", "backlighting", "harsh shadows",
    "soft diffuse light", "golden hour light", "moonlight", "fog", "overcast sky", "studio lighting",
    "a flash", "low light", "strong glare", "twilight", "a spotlight", "flickering light", "dappled shade",
    "firelight",
)
LIGHTING_FORMS = (
    "lit by {}", "a photo in {}", "taken under {}", "a scene with {}", "shown in {}", "an image with {}",
    "everything bathed in {}", "a shot in {}",
)
ACTIONS = (
    "running", "jumping", "sleeping", "eating", "flying", "swimming", "reading", "dancing", "sitting",
    "climbing", "throwing a ball", "riding a bike", "cooking", "singing", "waving", "walking", "skating",
    "surfing", "fishing", "painting", "laughing", "digging", "playing", "resting",
)
ACTION_SUBJECTS = (
    "a person", "a dog", "a child", "a bird", "a man", "a woman", "a cat", "an athlete", "a monkey", "a girl",
)

CONCEPTS: dict[str, list[str]] = {
    "color": [f.format(c) for c in COLORS for f in COLOR_FORMS],
    "shape": [f.format(s) for s in SHAPES for f in SHAPE_FORMS],
    "texture": [f.format(t) for t in TEXTURES for f in TEXTURE_FORMS],
    "object": [f.format(o) for o in OBJECTS for f in OBJECT_FORMS],
    "position": [f"{s} {p}" for s, p in itertools.product(POSITION_SUBJECTS, POSITIONS)],
    "size": [f.format(s) for s in SIZES for f in SIZE_FORMS],
    "scene": [f.format(s) for s in SCENES for f in SCENE_FORMS],
    "material": [f.format(m) for m in MATERIALS for f in MATERIAL_FORMS],
    "count": [f"{c} {n}" for c, n in itertools.product(COUNTS, COUNT_NOUNS)],
    "style": [f.format(s) for s in STYLES for f in STYLE_FORMS],
    "lighting": [f.format(light) for light in LIGHTING for f in LIGHTING_FORMS],
    "action": [f"{s} {a}" for s, a in itertools.product(ACTION_SUBJECTS, ACTIONS)],
}


def tidy(text: str) -> str:
    """Single spaces, and "an" before a vowel ("an orange object")."""
    return re.sub(r"\ba (?=[aeiou])", "an ", " ".join(text.split()))


def pool_lines() -> list[str]:
    rows = {(concept, tidy(text)) for concept, texts in CONCEPTS.items() for text in texts}
    return [f"{concept}\t{text}" for concept, text in sorted(rows)]


if __name__ == "__main__":
    lines = pool_lines()
    POOL_FILE.write_text("\n".join(lines) + "\n")
    print(f"Wrote {len(lines)} texts in {len(CONCEPTS)} concepts to {POOL_FILE}")
