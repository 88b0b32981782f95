import json
import os

from datasets.common import DiskDataset, check_wnid_folders, class_dirs, imagenet_classnames, layout_hint
from engine.data.base import DATASET_REGISTRY, Datum, list_visible
from engine.errors import DataError
from engine.io import atomic_write_text

CACHE_FORMAT = 1


@DATASET_REGISTRY.register()
class ImageNet(DiskDataset):
    """ILSVRC-2012: train from images/train, test from images/val (also used as val, as in CoOp).

    Listing 1.3M files is slow, so the listing is cached in `preprocessed.json` (CoOp keeps a
    pickle of absolute paths): file names per wnid folder, relative to images/, so the cache
    survives moving DATA. Delete it to rescan after changing the image folders.
    """

    dataset_dir = "imagenet"
    image_dir = "images"
    required = ("images/train", "images/val")
    cache_file = "preprocessed.json"

    def read_splits(self):
        listing = self.listing()
        wnids = sorted(listing["train"])
        if sorted(listing["val"]) != wnids:
            only_train = sorted(set(wnids) - set(listing["val"]))
            only_val = sorted(set(listing["val"]) - set(wnids))
            raise DataError(
                f"ImageNet: images/train and images/val must hold the same class folders; only in train: "
                f"{only_train[:3]}, only in val: {only_val[:3]} (under {self.images}). {layout_hint('ImageNet')}"
            )
        names = imagenet_classnames(self.root, self.data_root, "ImageNet", wnids)
        check_wnid_folders(wnids, names, self.images / "train", "ImageNet")

        def items(split: str) -> list[Datum]:
            out = []
            for label, wnid in enumerate(wnids):
                prefix = os.path.join(self.images, split, wnid, "")
                out.extend(Datum(prefix + name, label, 0, names[wnid]) for name in listing[split][wnid])
            return out

        return items("train"), None, items("val")

    def listing(self) -> dict[str, dict[str, list[str]]]:
        """{"train"|"val": {wnid: sorted file names}}, from the cache or a scan of images/."""
        cache = self.root / self.cache_file
        if cache.is_file():
            try:
                with open(cache) as f:
                    data = json.load(f)
                if data.get("format") == CACHE_FORMAT:
                    print(f"Loading preprocessed ImageNet file list from {cache}")
                    return {split: data[split] for split in ("train", "val")}
            except (json.JSONDecodeError, KeyError, AttributeError):
                pass
            print(f"ImageNet: {cache} is unreadable or from another version; rescanning {self.images}")
        listing = {
            split: {wnid: list_visible(self.images / split / wnid) for wnid in class_dirs(self.images / split)}
            for split in ("train", "val")
        }
        try:
            atomic_write_text(cache, json.dumps({"format": CACHE_FORMAT, **listing}))
            print(f"Saved ImageNet file list to {cache}")
        except OSError as e:
            print(f"ImageNet: could not write {cache} ({e}); the folders will be scanned again next time")
        return listing
