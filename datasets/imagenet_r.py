from datasets.common import ImageNetVariant
from engine.data.base import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class ImageNetR(ImageNetVariant):
    """ImageNet-R (test only): imagenet-r/<wnid>/ for a 200-class subset, labelled 0..199."""

    dataset_dir = "imagenet-rendition"
    image_dir = "imagenet-r"
