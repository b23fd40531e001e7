"""``make install`` installs what the suite last passed with: ``constraints.txt``.

A release upstream must not fail a fresh clone's ``make test`` (sentry-sdk 3.0 removed an
option a type-checked docs example used). The pins must cover every distribution the
extras install, or a new dependency comes in at whatever version is latest that day.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)$")


def pins() -> dict[str, str]:
    pinned: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = _PIN.match(line)
        assert match is not None, f"constraints.txt: {line!r} is not name==version"
        pinned[canonicalize_name(match["name"])] = match["version"]
    return pinned


def required_by_hardenkit() -> set[str]:
    """Every distribution the extras ``make install`` names require, transitively."""
    seen: set[str] = set()
    wanted = _applying(metadata.requires("hardenkit") or [], {"all", "dev", "docs", "bench"})
    while wanted:
        requirement = wanted.pop()
        name = canonicalize_name(requirement.name)
        if name in seen or name == "hardenkit":
            continue
        seen.add(name)
        try:
            requires = metadata.requires(requirement.name) or []
        except metadata.PackageNotFoundError:
            continue  # an environment marker left it out here
        wanted.extend(_applying(requires, requirement.extras))
    return seen


def _applying(requires: list[str], extras: set[str]) -> list[Requirement]:
    """The requirements that apply here with ``extras`` asked for."""
    applying = []
    for text in requires:
        requirement = Requirement(text)
        marker = requirement.marker
        if marker is None or any(marker.evaluate({"extra": extra}) for extra in extras | {""}):
            applying.append(requirement)
    return applying


def test_every_distribution_make_install_brings_is_pinned() -> None:
    missing = sorted(required_by_hardenkit() - set(pins()))
    assert not missing, f"not in constraints.txt (run make lock): {missing}"


def test_the_pins_name_each_distribution_once_and_include_pip() -> None:
    lines = [
        line
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert len(lines) == len(pins())
    assert "pip" in pins()


def test_make_install_applies_the_pins() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "CONSTRAINTS ?= constraints.txt" in makefile
    install = makefile[makefile.index("$(STAMP):") : makefile.index("install: $(STAMP)")]
    assert install.count("$(PIN)") == 2  # pip itself, then the package and its extras
