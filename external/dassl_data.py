"""`dassl.data`, `dassl.data.datasets`, `dassl.data.transforms`: Dassl's dataset classes and
data manager over promptlab's (engine/data/). Datasets that files register join promptlab's
DATASET_REGISTRY, so DATASET.NAME reaches them; the 15 CoOp datasets stay promptlab's own."""
from __future__ import annotations

import random
from collections import defaultdict
from typing import Sequence

from yacs.config import CfgNode

from engine.data.base import DATASET_REGISTRY as ENGINE_DATASETS
from engine.data.base import DatasetBase as EngineDatasetBase
from engine.data.base import Datum
from engine.data.manager import DataManager as EngineDataManager
from engine.data.manager import DatasetWrapper as EngineDatasetWrapper
from engine.data.transforms import INTERPOLATION as INTERPOLATION_MODES
from engine.data.transforms import build_test_transform, build_train_transform
from engine.errors import UsageError
from external.dassl_utils import Registry

DATASET_REGISTRY = Registry("DATASET", ENGINE_DATASETS)

__all__ = ["DATASET_REGISTRY", "DataManager", "DatasetBase", "DatasetWrapper", "Datum", "INTERPOLATION_MODES",
           "build_dataset", "build_transform"]


class DatasetBase(EngineDatasetBase):
    """Dassl's dataset container: train_x / train_u / val / test, with Dassl's helpers.

    Class count and names come from train_x as in Dassl (labels need not be contiguous).
    """

    dataset_dir = ""
    domains: list[str] = []

    def __init__(self, train_x=None, train_u=None, val=None, test=None):
        self._train_x, self._train_u, self._val, self._test = train_x, train_u, val, test
        self._num_classes = self.get_num_classes(train_x)
        self._lab2cname, self._classnames = self.get_lab2cname(train_x)

    @property
    def train_u(self):
        return self._train_u

    @property
    def classnames(self) -> list[str]:
        return self._classnames

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @staticmethod
    def get_num_classes(data_source: Sequence[Datum]) -> int:
        return max(item.label for item in data_source) + 1

    @staticmethod
    def get_lab2cname(data_source: Sequence[Datum]) -> tuple[dict[int, str], list[str]]:
        mapping = {item.label: item.classname for item in data_source}
        return mapping, [mapping[label] for label in sorted(mapping)]

    def check_input_domains(self, source_domains, target_domains) -> None:
        if not source_domains or not target_domains:
            raise ValueError("source_domains and target_domains must not be empty")
        self.is_input_domain_valid(source_domains)
        self.is_input_domain_valid(target_domains)

    def is_input_domain_valid(self, input_domains) -> None:
        for domain in input_domains:
            if domain not in self.domains:
                raise ValueError(f"Input domain must belong to {self.domains}, but got [{domain}]")

    def download_data(self, url: str, dst: str, from_gdrive: bool = True) -> None:
        raise UsageError(
            f"{type(self).__name__} tried to download {url}: promptlab does not download datasets from "
            f"dataset code. Put the files at {dst} yourself (docs/DATASETS.md)"
        )

    def generate_fewshot_dataset(self, *data_sources, num_shots: int = -1, repeat: bool = False):
        """`num_shots` items per class of each source, drawn with Python's global `random` (seeded
        by the run's SEED), in the order Dassl draws them, so the picks are Dassl's."""
        if num_shots < 1:
            return data_sources[0] if len(data_sources) == 1 else data_sources
        print(f"Creating a {num_shots}-shot dataset")
        output = []
        for source in data_sources:
            picked = []
            for items in self.split_dataset_by_label(source).values():
                if len(items) >= num_shots:
                    picked.extend(random.sample(items, num_shots))
                else:
                    picked.extend(random.choices(items, k=num_shots) if repeat else items)
            output.append(picked)
        return output[0] if len(output) == 1 else output

    def split_dataset_by_label(self, data_source) -> dict[int, list[Datum]]:
        groups: dict[int, list[Datum]] = defaultdict(list)
        for item in data_source:
            groups[item.label].append(item)
        return groups

    def split_dataset_by_domain(self, data_source) -> dict[int, list[Datum]]:
        groups: dict[int, list[Datum]] = defaultdict(list)
        for item in data_source:
            groups[item.domain].append(item)
        return groups


def build_dataset(cfg):
    if cfg.VERBOSE:
        print(f"Loading dataset: {cfg.DATASET.NAME}")
    return DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)


def build_transform(cfg, is_train: bool = True, choices=None):
    """Dassl's build_transform over promptlab's transforms; `choices` replaces INPUT.TRANSFORMS."""
    if choices is not None:
        cfg = cfg.clone()
        cfg.defrost()
        cfg.INPUT.TRANSFORMS = tuple(choices)
    return build_train_transform(cfg) if is_train else build_test_transform(cfg)


class DatasetWrapper(EngineDatasetWrapper):
    """Dassl's signature: DatasetWrapper(cfg, data_source, transform=None, is_train=False)."""

    def __init__(self, cfg: CfgNode, data_source, transform=None, is_train: bool = False):
        if transform is None:
            transform = build_transform(cfg, is_train=False)
        super().__init__(data_source, transform)
        self.cfg = cfg
        self.is_train = is_train


class DataManager(EngineDataManager):
    """Dassl's DataManager(cfg, custom_tfm_train, custom_tfm_test): promptlab's loaders plus
    Dassl's train_loader_u (None: no unlabelled data) and num_source_domains."""

    def __init__(self, cfg, custom_tfm_train=None, custom_tfm_test=None, dataset_wrapper=None):
        if dataset_wrapper is not None:
            raise UsageError("DataManager(dataset_wrapper=...) is not supported by promptlab's Dassl layer; "
                             "build the loaders in the trainer's build_data_loader instead")
        super().__init__(cfg, tfm_train=custom_tfm_train, tfm_test=custom_tfm_test)
        self.train_loader_u = None
        self.num_source_domains = len(cfg.DATASET.SOURCE_DOMAINS)
