from datasets.common import load_mat
from engine.data.base import DATASET_REGISTRY, Datum, SplitDataset, random_split


@DATASET_REGISTRY.register()
class StanfordCars(SplitDataset):
    dataset_dir = "stanford_cars"
    image_dir = ""  # split paths are relative to the dataset folder: cars_train/..., cars_test/...
    split_file = "split_zhou_StanfordCars.json"

    def make_splits(self):
        meta = self.root / "devkit" / "cars_meta.mat"
        trainval = self.read_annotations("cars_train", self.root / "devkit" / "cars_train_annos.mat", meta)
        test = self.read_annotations("cars_test", self.root / "cars_test_annos_withlabels.mat", meta)
        train, val, _ = random_split(trainval, p_train=0.8, p_val=0.2)
        return train, val, test

    def read_annotations(self, folder, anno_file, meta_file) -> list[Datum]:
        """Class names put the year first: "AM General Hummer SUV 2000" -> "2000 AM General Hummer SUV"."""
        annotations = load_mat(anno_file, "StanfordCars", self.split_file)["annotations"][0]
        class_names = load_mat(meta_file, "StanfordCars", self.split_file)["class_names"][0]
        items = []
        for anno in annotations:
            label = int(anno["class"][0, 0]) - 1
            *words, year = str(class_names[label][0]).split(" ")
            impath = str(self.images / folder / str(anno["fname"][0]))
            items.append(Datum(impath=impath, label=label, classname=" ".join([year, *words])))
        return items
