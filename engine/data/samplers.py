"""Batches and augmentation randomness that do not depend on how many processes train.

The training order of an epoch is a permutation drawn from (seed, epoch) alone, cut into global
batches of DATALOADER.TRAIN_X.BATCH_SIZE; under torchrun each rank takes one contiguous shard of
every global batch, so the ranks' shards together are exactly the single-process batch. Every
sample's augmentation draws from its own generator, seeded by (seed, epoch, index), so the crop and
flip an image gets is the same whichever process, worker or rank loads it. A resumed run starts
the epoch with the same permutation and augmentations as an uninterrupted run.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

from engine.errors import ConfigError


def derived_seed(*keys: int) -> int:
    """A 63-bit seed from integers, well mixed (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([k & 0xFFFFFFFFFFFFFFFF for k in keys]).generate_state(1, np.uint64)[0] >> 1)


def shard_bounds(size: int, rank: int, world: int) -> tuple[int, int]:
    """[start, stop) of rank's contiguous shard of `size` items; the first size % world ranks get one more."""
    base, extra = divmod(size, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """Training batches of (dataset index, augmentation seed) for one rank; `set_epoch` before each
    epoch (TrainerX.run_epoch does)."""

    def __init__(self, size: int, batch_size: int, drop_last: bool, shuffle: bool, seed: int,
                 rank: int = 0, world: int = 1):
        self.size, self.batch_size, self.drop_last, self.shuffle = size, batch_size, drop_last, shuffle
        self.seed, self.rank, self.world = seed, rank, world
        self.epoch = 0
        smallest = min(batch_size, size) if not drop_last else batch_size
        if world > 1 and smallest < world:
            raise ConfigError(
                f"Training with {world} processes splits every batch across them, but a batch holds "
                f"{smallest} images (DATALOADER.TRAIN_X.BATCH_SIZE {batch_size}, {size} training images). "
                f"Use at most {smallest} processes (NPROC / --nproc-per-node) or a larger batch"
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.size))
        generator = torch.Generator().manual_seed(derived_seed(self.seed, self.epoch))
        return torch.randperm(self.size, generator=generator).tolist()

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = self.order()
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            batch = order[start:start + self.batch_size]
            lo, hi = shard_bounds(len(batch), self.rank, self.world)
            yield [(i, derived_seed(self.seed, self.epoch, i)) for i in batch[lo:hi]]

    def __len__(self) -> int:
        if self.drop_last:
            return self.size // self.batch_size
        return -(-self.size // self.batch_size)


class ShardSampler(Sampler[int]):
    """Evaluation: this rank's contiguous shard of the split, in order (all of it in one process)."""

    def __init__(self, size: int, rank: int = 0, world: int = 1):
        self.start, self.stop = shard_bounds(size, rank, world)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start
