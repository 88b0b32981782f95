from datasets.common import class_folder_items
from engine.data.base import DATASET_REGISTRY, SplitDataset, random_split


@DATASET_REGISTRY.register()
class Food101(SplitDataset):
    dataset_dir = "food-101"
    image_dir = "images"
    split_file = "split_zhou_Food101.json"

    def make_splits(self):
        return random_split(class_folder_items(self.images, "Food101"), p_train=0.5, p_val=0.2)
