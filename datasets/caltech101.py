from datasets.common import class_folder_items
from engine.data.base import DATASET_REGISTRY, SplitDataset, random_split

IGNORED = ("BACKGROUND_Google", "Faces_easy")
RENAME = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}


@DATASET_REGISTRY.register()
class Caltech101(SplitDataset):
    dataset_dir = "caltech-101"
    image_dir = "101_ObjectCategories"
    split_file = "split_zhou_Caltech101.json"

    def make_splits(self):
        items = class_folder_items(self.images, "Caltech101", IGNORED, RENAME)
        return random_split(items, p_train=0.5, p_val=0.2)
