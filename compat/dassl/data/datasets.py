"""dassl.data.datasets (promptlab's layer: external/dassl_data.py)."""
from external.dassl_data import DATASET_REGISTRY, DatasetBase, Datum, build_dataset

__all__ = ["DATASET_REGISTRY", "DatasetBase", "Datum", "build_dataset"]
