"""Importing this package registers every dataset in DATASET_REGISTRY."""
from datasets import caltech101  # noqa: F401
