"""The plugin's configuration, as the admin set it (``[plugins.NAME.config]``)."""

from typing import Optional

from wit_world.imports import config as _config


def get(key: str, default: Optional[str] = None) -> Optional[str]:
    """The value of ``key``, or ``default`` when it is not set."""
    value = _config.get(key)
    return default if value is None else value


def keys() -> list:
    """Every key that is set, in sorted order."""
    return list(_config.keys())


def require(key: str) -> str:
    """The value of ``key``; ``Reject`` naming it when it is not set."""
    value = _config.get(key)
    if value is None:
        from . import Reject

        raise Reject(f"config key `{key}` is not set")
    return value
