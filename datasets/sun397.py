import posixpath

from datasets.common import parse_lines, read_lines
from engine.data.base import DATASET_REGISTRY, Datum, SplitDataset, random_split


@DATASET_REGISTRY.register()
class SUN397(SplitDataset):
    dataset_dir = "sun397"
    image_dir = "SUN397"
    split_file = "split_zhou_SUN397.json"

    def make_splits(self):
        """ClassName.txt + Training_01.txt / Testing_01.txt (the first official partition)."""
        classes = [line.lstrip("/") for line in read_lines(self.root / "ClassName.txt", "SUN397")]
        cname2lab = {c: i for i, c in enumerate(classes)}
        trainval = self.read_partition(cname2lab, "Training_01.txt")
        test = self.read_partition(cname2lab, "Testing_01.txt")
        train, val, _ = random_split(trainval, p_train=0.8, p_val=0.2)
        return train, val, test

    def read_partition(self, cname2lab: dict[str, int], name: str) -> list[Datum]:
        """Lines like /a/abbey/sun_x.jpg; "a/apartment_building/outdoor" -> "outdoor apartment_building"."""

        def parse(line: str) -> Datum:
            imname = line.lstrip("/")
            folder = posixpath.dirname(imname)
            classname = " ".join(folder.split("/")[1:][::-1])
            return Datum(impath=str(self.images / imname), label=cname2lab[folder], classname=classname)

        return parse_lines(self.root / name, "SUN397", parse)
