from datasets.common import ImageNetVariant
from engine.data.base import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class ImageNetSketch(ImageNetVariant):
    """ImageNet-Sketch (test only): images/<wnid>/ for the 1000 ImageNet classes."""

    dataset_dir = "imagenet-sketch"
    image_dir = "images"
