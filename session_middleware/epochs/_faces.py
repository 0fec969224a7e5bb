"""What the two providers share: their own steps run on the sync or the async face."""

from __future__ import annotations

from .._core.runners import drive_async, drive_sync
from .._core.steps import RedisSource, Step
from .._protocol.key_layout import UserId
from ..events import Listeners


class ProviderFaces:
    """`get`, `bump` and their async twins `aget`, `abump`: a provider's own steps
    (`read_epoch`, `bump_epoch`), run on the sync or the async face."""

    def read_epoch(self, user_id: UserId) -> Step[str | None]:
        raise NotImplementedError

    def bump_epoch(self, user_id: UserId) -> Step[str]:
        raise NotImplementedError

    def _runner_redis(self, method: str, is_async: bool) -> RedisSource:
        """The session Redis the steps of `method` run on, on the async face or the sync
        one; raises if the provider cannot serve that face."""
        raise NotImplementedError

    def _sync_redis(self, method: str) -> RedisSource:
        return self._runner_redis(method, is_async=False)

    def _async_redis(self, method: str) -> RedisSource:
        return self._runner_redis(method, is_async=True)

    def get(self, user_id: UserId) -> str | None:
        """The user's current epoch, or None if they have none."""
        return drive_sync(self.read_epoch(user_id), self._sync_redis("get"), Listeners())

    async def aget(self, user_id: UserId) -> str | None:
        """The async twin of get."""
        return await drive_async(self.read_epoch(user_id), self._async_redis("get"), Listeners())

    def bump(self, user_id: UserId) -> str:
        """Give the user a new epoch: every session stamped with an older one is rejected."""
        return drive_sync(self.bump_epoch(user_id), self._sync_redis("bump"), Listeners())

    async def abump(self, user_id: UserId) -> str:
        """The async twin of bump."""
        return await drive_async(self.bump_epoch(user_id), self._async_redis("bump"), Listeners())
