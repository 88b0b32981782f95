"""DeAR's recipe is MMRL++'s, number for number, each difference a key: its ViT-B/16 configs train as
MMRL++'s do (ImageNet at batch 32), BETA and LAMBDA_REG come from MMRL++'s per-dataset table
(DATASET_SETTINGS), and MMRL, MMRL++ and DeAR scale their logits by the official fixed 100 unless
LOGIT_SCALE 0 asks for the checkpoint's own."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from engine.errors import ConfigError
from tests.minidata import make_caltech_like
from train import parse_args, setup_cfg
from trainers.dear.trainer import DeAR
from trainers.mmrl import MMRLpp

REPO = Path(__file__).resolve().parents[1]
SHARED = [("DATALOADER", "TRAIN_X"), ("OPTIM",), ("INPUT",)]


@pytest.mark.parametrize("name", ["vit_b16", "vit_b16_imagenet", "vit_b16_few_shot", "vit_b16_cross_datasets"])
def test_dear_vit_b16_configs_train_as_mmrl_plus_plus_does(name):
    dear, mmrlpp = (yaml.safe_load((REPO / f"configs/trainers/{t}/{name}.yaml").read_text()) for t in ("DeAR", "MMRLpp"))
    for path in SHARED:
        a, b = dear, mmrlpp
        for key in path:
            a, b = a[key], b[key]
        assert a == b, (name, path)
    node = dear["TRAINER"]["DEAR"]
    assert node["DATASET_SETTINGS"] == "mmrlpp" and node["LOGIT_SCALE"] == 100.0
    if name == "vit_b16_imagenet":
        assert dear["DATALOADER"]["TRAIN_X"]["BATCH_SIZE"] == 32


def cfg_for(dataset, *opts, config="vit_b16"):
    return setup_cfg(parse_args(["--trainer", "DeAR", "--dataset-config-file", f"configs/datasets/{dataset}.yaml",
                                 "--config-file", f"configs/trainers/DeAR/{config}.yaml", *opts]))


def test_beta_and_lambda_reg_follow_mmrl_plus_plus_per_dataset_table():
    for dataset, task, config, beta, reg in [
        ("caltech101", "B2N", "vit_b16", 0.6, 3.0), ("dtd", "B2N", "vit_b16", 0.9, 7.0),
        ("eurosat", "FS", "vit_b16_few_shot", 0.2, 0.01), ("imagenet", "CD", "vit_b16_cross_datasets", 0.9, 0.1),
    ]:
        c = cfg_for(dataset, "TASK", task, config=config).TRAINER.DEAR
        assert (c.BETA, c.LAMBDA_REG) == (beta, reg), dataset
        mmrlpp = MMRLpp.dataset_settings(task, cfg_for(dataset).DATASET.NAME)
        assert (mmrlpp["BETA"], mmrlpp["REG_WEIGHT"]) == (beta, reg)  # the one table, trainers/mmrl.py
    target = cfg_for("eurosat", "TASK", "CD", config="vit_b16_cross_datasets").TRAINER.DEAR
    assert (target.BETA, target.LAMBDA_REG) == (0.3, 0.1)  # a CD target: its BETA, the yaml's LAMBDA_REG
    own = cfg_for("caltech101", "TRAINER.DEAR.DATASET_SETTINGS", "none").TRAINER.DEAR
    assert (own.BETA, own.LAMBDA_REG) == (0.9, 1.0)
    assert cfg_for("caltech101", "TRAINER.DEAR.LAMBDA_REG", "2.0").TRAINER.DEAR.LAMBDA_REG == 2.0  # the command line wins
    attr = cfg_for("attr_hue_shift", config="tiny_ep10_batch4").TRAINER.DEAR
    assert (attr.BETA, attr.LAMBDA_REG, attr.LOGIT_SCALE) == (0.9, 1.0, 0.0)  # not in the table; tiny-attr's own scale


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_caltech_like(tmp_path_factory.mktemp("data"))


TINY = ["MODEL.BACKBONE.NAME", "tiny-test", "MODEL.BACKBONE.PRETRAINED", "False", "INPUT.SIZE", "(32, 32)",
        "DATALOADER.NUM_WORKERS", "0"]


def test_dear_reports_its_per_dataset_settings_and_scales_logits_by_logit_scale(data_root, tmp_path, capsys):
    def build(*opts):
        return DeAR(setup_cfg(parse_args(
            ["--root", str(data_root), "--trainer", "DeAR", "--dataset-config-file", "configs/datasets/caltech101.yaml",
             "--config-file", "configs/trainers/DeAR/vit_b16.yaml", "--output-dir", str(tmp_path), *TINY,
             "TRAINER.DEAR.PREC", "fp32", "TRAINER.DEAR.J", "1", "TRAINER.DEAR.MASK", "none", *opts])))

    fixed = build("TRAINER.DEAR.LAMBDA_REG", "2.0")
    assert ("DeAR per-dataset settings (MMRL++'s official table) for Caltech101, TASK B2N: BETA 0.6; LAMBDA_REG 3.0, "
            "overridden on the command line: 2.0") in capsys.readouterr().out
    own = build("TRAINER.DEAR.LOGIT_SCALE", "0.0")
    with pytest.raises(ConfigError, match=r"TRAINER\.DEAR\.LOGIT_SCALE must be > 0 .* or 0 .*, got -1\.0"):
        build("TRAINER.DEAR.LOGIT_SCALE", "-1.0")
    model = fixed.model
    torch.manual_seed(0)
    cls, attr, text = torch.randn(2, 32), torch.randn(2, 5, 32), torch.randn(3, 32)
    cosine = torch.cat([cls[:, None], attr], 1)
    cosine = F.normalize(cosine, dim=-1) @ F.normalize(text, dim=-1).t()
    torch.testing.assert_close(model.path_logits(cls, attr, text), 100 * cosine)
    torch.testing.assert_close(own.model.path_logits(cls, attr, text), model.clip.logit_scale.exp() * cosine)
    assert abs(model.clip.logit_scale.exp().item() - 100) > 50  # a random init: the two readings differ


def test_mmrl_trainers_take_logit_scale_from_the_config(data_root, tmp_path):
    def model(*opts):
        torch.manual_seed(0)  # the same random CLIP and representation space for both
        return MMRLpp(setup_cfg(parse_args(
            ["--root", str(data_root), "--trainer", "MMRLpp", "--dataset-config-file", "configs/datasets/caltech101.yaml",
             "--config-file", "configs/trainers/MMRLpp/tiny_ep10_batch4.yaml", "--output-dir", str(tmp_path), *TINY,
             "TRAINER.MMRLpp.REP_LAYERS", "[1, 2]", "TRAINER.MMRLpp.REP_DIM", "32", "TRAINER.MMRLpp.PROJ_LORA_DIM", "4",
             *opts]))).model

    own, fixed = model(), model("TRAINER.MMRLpp.LOGIT_SCALE", "100.0")
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    text = F.normalize(torch.randn(3, 32, generator=torch.Generator().manual_seed(2)), dim=-1)
    with torch.no_grad():
        a, b = own.outputs(images, text), fixed.outputs(images, text)
    scale = own.clip.logit_scale.exp()
    torch.testing.assert_close(b.logits, a.logits / scale * 100)
    torch.testing.assert_close(b.logits_rep, a.logits_rep / scale * 100)
