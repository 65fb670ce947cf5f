"""config.example.toml and the README document every setting, with the real defaults."""

from __future__ import annotations

import argparse
import dataclasses
import re
import tomllib
from pathlib import Path

from gateway.cli.main import build_parser
from gateway.config import Settings, beside, load_settings
from gateway.ops.reload_policy import RELOADABLE

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
    assert load_settings(ROOT / "config.example.toml", env={}) == beside(Settings(), ROOT)


def test_readme_config_table_names_every_key() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = sorted(key for key in all_keys() if f"`{key}`" not in readme)
    assert missing == []


SECURITY_ROW = re.compile(r"\| `([a-z_]+\.[a-z_]+)` \| ([0-9.]+)(?: (bytes|MiB|s))? \|")
UNITS = {"": 1, "bytes": 1, "s": 1, "MiB": 1024 * 1024}
# The settings that bound what a client or upstream can make the gateway do or hold.
LIMITS = {
    "server.max_line_bytes",
    "server.max_header_bytes",
    "server.max_headers",
    "server.header_timeout",
    "server.max_body_bytes",
    "server.shutdown_grace",
    "cache.max_body_bytes",
    "cache.memory_entries",
    "cache.memory_bytes",
    "upstream.connect_timeout",
    "upstream.timeout",
    "upstream.deadline",
    "upstream.max_attempts",
    "upstream.retry_after_cap",
    "upstream.max_short_calls",
    "upstream.queue_timeout",
    "upstream.long_poll_timeout",
    "upstream.stream_idle_timeout",
    "storage.busy_timeout_ms",
}


def test_security_md_gives_every_limit_with_its_real_default() -> None:
    text = (ROOT / "SECURITY.md").read_text()
    documented = {
        key: float(number) * UNITS[unit] for key, number, unit in SECURITY_ROW.findall(text)
    }
    defaults = Settings()
    actual = {
        key: float(getattr(getattr(defaults, key.split(".")[0]), key.split(".")[1]))
        for key in documented
    }
    assert documented == actual
    assert set(documented) == LIMITS


def test_ci_tests_the_lowest_aiohttp_that_pyproject_admits() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    floors = [re.fullmatch(r"aiohttp>=([0-9.]+),<.*", d) for d in project["dependencies"]]
    floor = next(match.group(1) for match in floors if match)
    makefile = (ROOT / "Makefile").read_text()
    assert f"AIOHTTP_LOWEST := {floor}\n" in makefile
    assert "make test-lowest\n" in (ROOT / ".ci" / "run").read_text()


def commands(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()) -> dict[str, set[str]]:
    """Each command that runs something ("keys rotate") and the options it takes."""
    found: dict[str, set[str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, command in action.choices.items():
                found |= commands(command, (*words, name))
    if not found and words:
        found[" ".join(words)] = {
            option
            for action in parser._actions
            for option in action.option_strings
            # The options every command takes are said once, under the block.
            if option.startswith("--") and option not in ("--help", "--config", "--create")
        }
    return found


def test_readme_command_reference_shows_every_command_and_flag() -> None:
    readme = (ROOT / "README.md").read_text()
    reference = readme.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    lines = {
        line.removeprefix("parallel-gateway ")
        for line in reference.splitlines()
        if line.startswith("parallel-gateway ")
    }
    missing = []
    for command, options in commands(build_parser()).items():
        line = next((line for line in lines if f"{line} ".startswith(f"{command} ")), None)
        if line is None:
            missing.append(command)
            continue
        missing += [f"{command} {option}" for option in options if option not in line]
    assert missing == []


def test_config_example_and_readme_name_exactly_the_settings_that_reload() -> None:
    section, marked = "", set()
    for line in (ROOT / "config.example.toml").read_text().splitlines():
        header = re.fullmatch(r"\[(\w+)\]", line)
        section = header.group(1) if header else section
        key = re.match(r"(\w+) = .*\(reloads\)$", line)
        if key:
            marked.add(f"{section}.{key.group(1)}")
    assert marked == RELOADABLE
    readme = (ROOT / "README.md").read_text()
    paragraph = readme.split("- **Reloading the config.**", 1)[1].split("\n- **", 1)[0]
    named = set(re.findall(r"`([a-z_]+\.[a-z_]+)`", paragraph))
    assert named >= RELOADABLE
    restart = paragraph.split("needs a restart", 1)[1]
    assert set(re.findall(r"`([a-z_]+\.[a-z_]+)`", restart)).isdisjoint(RELOADABLE)
