from datasets.common import load_mat, read_json
from engine.data.base import DATASET_REGISTRY, Datum, SplitDataset, random_split


@DATASET_REGISTRY.register()
class OxfordFlowers(SplitDataset):
    dataset_dir = "oxford_flowers"
    image_dir = "jpg"
    split_file = "split_zhou_OxfordFlowers.json"

    def make_splits(self):
        """imagelabels.mat (1-based label of image_00001.jpg, ...) + cat_to_name.json, 50/20/30."""
        cat_to_name_file = self.root / "cat_to_name.json"
        cat_to_name = read_json(cat_to_name_file, "OxfordFlowers")
        labels = load_mat(self.root / "imagelabels.mat", "OxfordFlowers", self.split_file)["labels"][0]
        items = []
        for i, label in enumerate(labels):
            label = int(label)
            if str(label) not in cat_to_name:
                raise KeyError(f"OxfordFlowers: label {label} has no name in {cat_to_name_file}")
            impath = str(self.images / f"image_{i + 1:05d}.jpg")
            items.append(Datum(impath=impath, label=label - 1, classname=cat_to_name[str(label)]))
        return random_split(items, p_train=0.5, p_val=0.2)
