"""config.example.toml and the README document every setting, with the real defaults."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

from gateway.config import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


def all_keys() -> set[str]:
    return {
        f"{section.name}.{key.name}"
        for section in dataclasses.fields(Settings)
        for key in dataclasses.fields(getattr(Settings(), section.name))
    }


def test_example_config_sets_every_key_to_its_default() -> None:
    example = tomllib.loads((ROOT / "config.example.toml").read_text())
    documented = {f"{section}.{key}" for section, values in example.items() for key in values}
    assert documented == all_keys()
    assert load_settings(ROOT / "config.example.toml", env={}) == Settings()


def test_readme_config_table_names_every_key() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = sorted(key for key in all_keys() if f"`{key}`" not in readme)
    assert missing == []
