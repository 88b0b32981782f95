from datasets.common import parse_lines
from engine.data.base import DATASET_REGISTRY, Datum, SplitDataset, random_split


@DATASET_REGISTRY.register()
class OxfordPets(SplitDataset):
    dataset_dir = "oxford_pets"
    image_dir = "images"
    split_file = "split_zhou_OxfordPets.json"

    def make_splits(self):
        trainval = self.read_annotations("trainval.txt")
        test = self.read_annotations("test.txt")
        # CoOp: per class, round(20%) of the official trainval goes to val, the rest to train.
        train, val, _ = random_split(trainval, p_train=0.8, p_val=0.2)
        return train, val, test

    def read_annotations(self, name: str) -> list[Datum]:
        """annotations/<name>: `Image_name class_id species breed_id`; class name = lower-case breed."""

        def parse(line: str) -> Datum:
            imname, label, _species, _breed = line.split(" ")
            breed = imname.rsplit("_", 1)[0].lower()
            return Datum(impath=str(self.images / f"{imname}.jpg"), label=int(label) - 1, classname=breed)

        return parse_lines(self.root / "annotations" / name, "OxfordPets", parse)
