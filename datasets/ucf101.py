import re

from datasets.common import parse_lines
from engine.data.base import DATASET_REGISTRY, Datum, SplitDataset, random_split


def split_camel_case(action: str) -> str:
    """ApplyEyeMakeup -> Apply_Eye_Makeup (the mid-frame folder and class name)."""
    return "_".join(re.findall("[A-Z][^A-Z]*", action))


@DATASET_REGISTRY.register()
class UCF101(SplitDataset):
    dataset_dir = "ucf101"
    image_dir = "UCF-101-midframes"
    split_file = "split_zhou_UCF101.json"

    def make_splits(self):
        """ucfTrainTestlist/classInd.txt + trainlist01.txt / testlist01.txt (official split 1)."""
        lists = self.root / "ucfTrainTestlist"

        def parse_class(line: str) -> tuple[str, int]:
            label, action = line.split(" ")
            return action, int(label) - 1

        cname2lab = dict(parse_lines(lists / "classInd.txt", "UCF101", parse_class))
        trainval = self.read_list(cname2lab, lists / "trainlist01.txt")
        test = self.read_list(cname2lab, lists / "testlist01.txt")
        train, val, _ = random_split(trainval, p_train=0.8, p_val=0.2)
        return train, val, test

    def read_list(self, cname2lab: dict[str, int], path) -> list[Datum]:
        """Lines like `ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi [label]` -> the .jpg mid-frame."""

        def parse(line: str) -> Datum:
            action, filename = line.split(" ")[0].split("/")
            renamed = split_camel_case(action)
            impath = str(self.images / renamed / filename.replace(".avi", ".jpg"))
            return Datum(impath=impath, label=cname2lab[action], classname=renamed)

        return parse_lines(path, "UCF101", parse)
