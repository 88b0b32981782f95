"""dassl.data (promptlab's layer: external/dassl_data.py)."""
from external.dassl_data import DataManager, DatasetWrapper

__all__ = ["DataManager", "DatasetWrapper"]
