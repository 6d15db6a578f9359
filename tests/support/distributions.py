"""Fake installed distributions, for tests of the ``ormsession.stores`` entry-point group."""

from __future__ import annotations

from pathlib import Path

import pytest

from ormsession.repositories import registry


def install_distribution(
    site: Path, name: str, stores: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Make ``importlib.metadata`` see a distribution ``name`` whose ``ormsession.stores``
    entry points are ``stores`` (scheme -> ``"module:factory"``), as ``pip install`` would
    leave it: a ``<name>-<version>.dist-info`` directory on ``sys.path``.

    The registry reads the group once per process; its cache is reset here (and restored
    by ``monkeypatch``), so the distribution is seen now and forgotten after the test.
    """
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    declared = "".join(f"{scheme} = {target}\n" for scheme, target in stores.items())
    (info / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\n{declared}")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(registry, "_entry_points", None)
