from datasets.common import DiskDataset, parse_lines, read_lines
from engine.data.base import DATASET_REGISTRY, Datum


@DATASET_REGISTRY.register()
class FGVCAircraft(DiskDataset):
    """The official variant-level split, read from the text files at every load (CoOp has no JSON)."""

    dataset_dir = "fgvc_aircraft"
    image_dir = "images"
    required = ("variants.txt", "images_variant_train.txt", "images_variant_val.txt", "images_variant_test.txt")

    def read_splits(self):
        classnames = read_lines(self.root / "variants.txt", "FGVCAircraft")
        cname2lab = {c: i for i, c in enumerate(classnames)}
        return tuple(self.read_list(cname2lab, f"images_variant_{split}.txt") for split in ("train", "val", "test"))

    def read_list(self, cname2lab: dict[str, int], name: str) -> list[Datum]:
        """Lines like `1025794 707-320`: image id, then the variant (which may hold spaces)."""

        def parse(line: str) -> Datum:
            image_id, classname = line.split(" ", 1)
            if classname not in cname2lab:
                raise KeyError(f"variant {classname!r} is not in variants.txt")
            return Datum(impath=str(self.images / f"{image_id}.jpg"), label=cname2lab[classname], classname=classname)

        return parse_lines(self.root / name, "FGVCAircraft", parse)
