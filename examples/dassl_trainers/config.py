"""The config keys of the example trainers, declared as a Dassl repository's train.py declares
them. `--trainer-file examples/dassl_trainers` finds this extend_cfg and runs it alone; a real
repository's train.py is passed the same way (--trainer-file their_repo/train.py)."""


def extend_cfg(cfg):
    from yacs.config import CfgNode as CN

    cfg.TRAINER.DASSLCOOP = CN()
    cfg.TRAINER.DASSLCOOP.N_CTX = 16  # context vectors
    cfg.TRAINER.DASSLCOOP.CTX_INIT = ""  # words that initialise the context
    cfg.TRAINER.DASSLCOOP.PREC = "fp16"  # fp16, fp32 or amp

    cfg.TRAINER.DASSLCOCOOP = CN()
    cfg.TRAINER.DASSLCOCOOP.N_CTX = 16
    cfg.TRAINER.DASSLCOCOOP.CTX_INIT = ""
    cfg.TRAINER.DASSLCOCOOP.PREC = "fp16"

    cfg.TRAINER.DASSLADAPTER = CN()
    cfg.TRAINER.DASSLADAPTER.REDUCTION = 4  # bottleneck width = embed_dim / REDUCTION
    cfg.TRAINER.DASSLADAPTER.RATIO = 0.2  # weight of the adapted feature in the residual blend
    cfg.TRAINER.DASSLADAPTER.PREC = "fp16"
