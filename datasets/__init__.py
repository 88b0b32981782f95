"""Importing this package registers every dataset in DATASET_REGISTRY."""
from datasets import (  # noqa: F401
    attribute_world,
    caltech101,
    dtd,
    eurosat,
    fgvc_aircraft,
    food101,
    imagenet,
    imagenet_a,
    imagenet_r,
    imagenet_sketch,
    imagenetv2,
    oxford_flowers,
    oxford_pets,
    stanford_cars,
    sun397,
    ucf101,
)
