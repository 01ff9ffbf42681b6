"""Logging into the host's log, tagged with the plugin's name.

``print`` works too (standard output goes to the host's log at info level).
"""

from wit_world.imports import log as _log


def trace(text: str) -> None:
    _log.log(_log.Level.TRACE, str(text))


def debug(text: str) -> None:
    _log.log(_log.Level.DEBUG, str(text))


def info(text: str) -> None:
    _log.log(_log.Level.INFO, str(text))


def warn(text: str) -> None:
    _log.log(_log.Level.WARN, str(text))


def error(text: str) -> None:
    _log.log(_log.Level.ERROR, str(text))
