"""Where each user's epoch lives: the Protocol and its providers."""

from .base import EpochContext, EpochProvider, new_epoch
from .redis import RedisEpochs

__all__ = ["EpochContext", "EpochProvider", "RedisEpochs", "new_epoch"]
