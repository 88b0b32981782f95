"""Hand-written per-dataset prompt templates (CoOp's zsclip.py), shared by every method."""
from __future__ import annotations

from engine.data.base import DATASET_REGISTRY

DEFAULT_TEMPLATE = "a photo of a {}."

CUSTOM_TEMPLATES = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
}


def template_for(dataset_name: str) -> str:
    """CoOp's template; a dataset class may declare its own `TEMPLATE` (e.g. synthetic sets)."""
    if dataset_name in CUSTOM_TEMPLATES:
        return CUSTOM_TEMPLATES[dataset_name]
    if dataset_name in DATASET_REGISTRY:
        return getattr(DATASET_REGISTRY.get(dataset_name), "TEMPLATE", DEFAULT_TEMPLATE)
    return DEFAULT_TEMPLATE


def class_prompts(dataset_name: str, classnames: list[str]) -> list[str]:
    """Every class's hand-written prompt (CoOp's zero-shot text): the dataset's template
    filled with the class name, underscores read as spaces."""
    template = template_for(dataset_name)
    return [template.format(name.replace("_", " ")) for name in classnames]
