from datasets.common import class_folder_items
from engine.data.base import DATASET_REGISTRY, SplitDataset, random_split

# CoOp's descriptive names for EuroSAT's folder names.
RENAME = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


@DATASET_REGISTRY.register()
class EuroSAT(SplitDataset):
    dataset_dir = "eurosat"
    image_dir = "2750"
    split_file = "split_zhou_EuroSAT.json"

    def make_splits(self):
        items = class_folder_items(self.images, "EuroSAT", rename=RENAME)
        return random_split(items, p_train=0.5, p_val=0.2)
