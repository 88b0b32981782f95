"""The stand-in repository's train.py: promptlab runs its extend_cfg alone (this import would fail)."""
import a_module_only_this_repository_has  # noqa: F401
from yacs.config import CfgNode as CN


def extend_cfg(cfg):
    cfg.TRAINER.COOP = CN()
    cfg.TRAINER.COOP.N_CTX = 16
    cfg.TRAINER.COOP.CSC = False
    cfg.TRAINER.COOP.CTX_INIT = False  # a flag here: True takes the words of the dataset's template
    cfg.TRAINER.COOP.W = 8.0
    cfg.TRAINER.COOP.PREC = "fp16"
    cfg.TRAINER.COOP.CLASS_TOKEN_POSITION = "end"

    cfg.TRAINER.REPTOK = CN()
    cfg.TRAINER.REPTOK.N_REP_TOKENS = 2
    cfg.TRAINER.REPTOK.PREC = "fp16"

    cfg.LOSS = CN()
    cfg.LOSS.NAME = "ce"
