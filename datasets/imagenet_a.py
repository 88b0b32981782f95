from datasets.common import ImageNetVariant
from engine.data.base import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class ImageNetA(ImageNetVariant):
    """ImageNet-A (test only): imagenet-a/<wnid>/ for a 200-class subset, labelled 0..199."""

    dataset_dir = "imagenet-adversarial"
    image_dir = "imagenet-a"
