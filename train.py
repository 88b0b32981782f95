"""CoOp's command line, unchanged: python train.py --root DATA --trainer CoOp ... [KEY VALUE ...]"""
from __future__ import annotations

import argparse

import torch

import datasets  # noqa: F401  (registers the datasets)
import trainers  # noqa: F401  (registers the trainers and their config nodes)
from engine.config import dataset_overrides, get_cfg, merge_file, merge_list
from engine.logging import setup_logger
from engine.registry import TRAINER_REGISTRY
from engine.utils import set_random_seed


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--root", type=str, default="", help="path to dataset")
    p.add_argument("--output-dir", type=str, default="", help="output directory")
    p.add_argument("--resume", type=str, default="", help="checkpoint directory (from which the training resumes)")
    p.add_argument("--seed", type=int, default=None, help="only non-negative values set the seed (0 included)")
    p.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    p.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    p.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    p.add_argument("--config-file", type=str, default="", help="path to config file")
    p.add_argument("--dataset-config-file", type=str, default="", help="path to config file for dataset setup")
    p.add_argument("--trainer", type=str, default="", help="name of trainer")
    p.add_argument("--backbone", type=str, default="", help="name of CNN backbone")
    p.add_argument("--head", type=str, default="", help="name of head")
    p.add_argument("--eval-only", action="store_true", help="evaluation only")
    p.add_argument("--model-dir", type=str, default="", help="load model from this directory for eval-only mode")
    p.add_argument("--load-epoch", type=int, help="load model weights at this epoch for evaluation")
    p.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    p.add_argument("opts", default=None, nargs=argparse.REMAINDER, help="modify config options using the command-line")
    return p.parse_args(argv)


def reset_cfg(cfg, args: argparse.Namespace) -> None:
    """CLI flags override the yaml files (CoOp's reset_cfg), except that --seed 0 counts."""
    if args.root:
        cfg.DATASET.ROOT = args.root
    if args.output_dir:
        cfg.OUTPUT_DIR = args.output_dir
    if args.resume:
        cfg.RESUME = args.resume
    if args.seed is not None:
        cfg.SEED = args.seed
    if args.source_domains:
        cfg.DATASET.SOURCE_DOMAINS = args.source_domains
    if args.target_domains:
        cfg.DATASET.TARGET_DOMAINS = args.target_domains
    if args.transforms:
        cfg.INPUT.TRANSFORMS = args.transforms
    if args.trainer:
        cfg.TRAINER.NAME = args.trainer
    if args.backbone:
        cfg.MODEL.BACKBONE.NAME = args.backbone
    if args.head:
        cfg.MODEL.HEAD.NAME = args.head


def setup_cfg(args: argparse.Namespace):
    cfg = get_cfg()
    if args.dataset_config_file:
        merge_file(cfg, args.dataset_config_file)
    if args.config_file:
        merge_file(cfg, args.config_file)
    reset_cfg(cfg, args)
    merge_list(cfg, dataset_overrides(cfg, args.opts or []), source=f"{cfg.TRAINER.NAME}'s per-dataset settings")
    merge_list(cfg, args.opts or [])
    cfg.freeze()
    return cfg


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = setup_cfg(args)
    trainer_cls = TRAINER_REGISTRY.get(cfg.TRAINER.NAME)
    with setup_logger(cfg.OUTPUT_DIR):
        run(cfg, args, trainer_cls)


def run(cfg, args: argparse.Namespace, trainer_cls) -> None:
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True
    print("** Arguments **")
    for key, value in sorted(vars(args).items()):
        print(f"{key}: {value}")
    print("** Config **")
    print(cfg)
    trainer = trainer_cls(cfg)
    if args.eval_only:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.test()
        return
    if not args.no_train:
        trainer.train()


if __name__ == "__main__":
    main()
