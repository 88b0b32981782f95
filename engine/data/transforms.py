"""Train/test transforms built exactly as Dassl builds them for CLIP-style configs."""
from __future__ import annotations

from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from engine.errors import ConfigError
from engine.registry import did_you_mean

INTERPOLATION = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}
CHOICES = ("random_resized_crop", "random_crop", "center_crop", "random_flip", "normalize")


def _check(cfg) -> None:
    for name in cfg.INPUT.TRANSFORMS:
        if name not in CHOICES:
            raise ConfigError(
                f"INPUT.TRANSFORMS: unknown transform {name!r}.{did_you_mean(name, CHOICES)} Supported: {CHOICES}"
            )
    if cfg.INPUT.INTERPOLATION not in INTERPOLATION:
        raise ConfigError(f"INPUT.INTERPOLATION must be one of {sorted(INTERPOLATION)}, got {cfg.INPUT.INTERPOLATION!r}")


def _tail(cfg) -> list:
    tail = [T.ToTensor()]
    if "normalize" in cfg.INPUT.TRANSFORMS:
        tail.append(T.Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD))
    return tail


def build_train_transform(cfg) -> T.Compose:
    _check(cfg)
    choices, size = cfg.INPUT.TRANSFORMS, tuple(cfg.INPUT.SIZE)
    interp = INTERPOLATION[cfg.INPUT.INTERPOLATION]
    tfms: list = []
    if "random_crop" not in choices and "random_resized_crop" not in choices:
        tfms.append(T.Resize(size, interpolation=interp))
    if "random_crop" in choices:
        tfms.append(T.RandomCrop(size, padding=cfg.INPUT.CROP_PADDING))
    if "random_resized_crop" in choices:
        tfms.append(T.RandomResizedCrop(size, scale=tuple(cfg.INPUT.RRCROP_SCALE), interpolation=interp))
    if "center_crop" in choices:
        tfms.append(T.CenterCrop(size))
    if "random_flip" in choices:
        tfms.append(T.RandomHorizontalFlip())
    return T.Compose(tfms + _tail(cfg))


def build_test_transform(cfg) -> T.Compose:
    """Resize the short side to max(SIZE), center-crop SIZE, to tensor, normalize."""
    _check(cfg)
    size = tuple(cfg.INPUT.SIZE)
    interp = INTERPOLATION[cfg.INPUT.INTERPOLATION]
    return T.Compose([T.Resize(max(size), interpolation=interp), T.CenterCrop(size)] + _tail(cfg))
