from datasets.common import NUM_IMAGENET_CLASSES, DiskDataset, class_dirs, imagenet_classnames, layout_hint
from engine.data.base import DATASET_REGISTRY, Datum, list_visible
from engine.errors import DataError, MissingFileError


@DATASET_REGISTRY.register()
class ImageNetV2(DiskDataset):
    """ImageNetV2 matched-frequency (test only): folders 0..999 hold the images of label 0..999."""

    dataset_dir = "imagenetv2"
    image_dir = "imagenetv2-matched-frequency-format-val"
    test_only = True

    def read_splits(self):
        expected = [str(label) for label in range(NUM_IMAGENET_CLASSES)]
        folders = class_dirs(self.images)
        if sorted(folders) != sorted(expected):
            missing = sorted(set(expected) - set(folders), key=int)
            extra = sorted(set(folders) - set(expected))
            raise MissingFileError(
                f"ImageNetV2: {self.images} must hold the folders 0..999; missing {missing[:5]} "
                f"({len(missing)} in all), unexpected {extra[:5]}. {layout_hint('ImageNetV2')}"
            )
        classnames = list(imagenet_classnames(self.root, self.data_root, "ImageNetV2").values())
        if len(classnames) != NUM_IMAGENET_CLASSES:
            raise DataError(f"ImageNetV2: expected {NUM_IMAGENET_CLASSES} class names, found {len(classnames)}")
        data = []
        for label, folder in enumerate(expected):
            names = list_visible(self.images / folder)
            if not names:
                raise MissingFileError(f"ImageNetV2: {self.images / folder} is empty. {layout_hint('ImageNetV2')}")
            data += [Datum(str(self.images / folder / name), label, 0, classnames[label]) for name in names]
        return data, None, data
