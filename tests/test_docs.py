"""The docs stay true: every setting documented, no documented setting that does not exist."""

from __future__ import annotations

import re
from pathlib import Path

from hardenkit._section import env_name
from hardenkit.settings import HardenSettings

ROOT = Path(__file__).resolve().parent.parent


def documented_settings() -> set[str]:
    text = (ROOT / "docs" / "settings.md").read_text()
    return set(re.findall(r"^\| `(HARDENKIT_[A-Z0-9_]+)` \|", text, flags=re.MULTILINE))


def test_every_setting_is_documented_in_the_settings_table() -> None:
    fields = {env_name(name) for name in HardenSettings.model_fields}
    assert fields - documented_settings() == set()


def test_no_documented_setting_is_missing_from_the_code() -> None:
    fields = {env_name(name) for name in HardenSettings.model_fields}
    assert documented_settings() - fields == set()


def test_every_public_name_is_exported_once_and_importable() -> None:
    import hardenkit

    assert len(hardenkit.__all__) == len(set(hardenkit.__all__))
    for name in hardenkit.__all__:
        assert hasattr(hardenkit, name), name


def test_every_public_name_has_its_entry_in_the_api_reference() -> None:
    import hardenkit

    text = (ROOT / "docs" / "reference.md").read_text()
    # `install` is both a module and the function it exports: the entry names the function.
    entries = re.findall(r"^::: hardenkit\.(?:install\.)?(\w+)$", text, flags=re.MULTILINE)
    assert len(entries) == len(set(entries))
    assert set(hardenkit.__all__) - {"__version__"} - set(entries) == set()
    assert "members: false" not in text


def test_the_site_has_its_four_sections_and_every_page_in_one() -> None:
    text = (ROOT / "mkdocs.yml").read_text()
    nav = text.split("\nnav:\n", 1)[1]
    sections = re.findall(r"^  - ([^:]+):$", nav, flags=re.MULTILINE)
    assert sections == ["Getting started", "Guides", "Operations", "Reference"]
    in_nav = re.findall(r"^      - [^:]+: (\S+\.md)$", nav, flags=re.MULTILINE)
    pages = sorted(path.name for path in (ROOT / "docs").glob("*.md"))
    assert sorted(in_nav) == pages
