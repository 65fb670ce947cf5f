"""Per-key route allowlists: "METHOD /path/pattern" rules, matched on the raw path. Pure."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "*")


class AllowError(ValueError):
    """A rule that cannot be understood."""


@dataclass(frozen=True, slots=True)
class Rule:
    """`*` matches within one path segment; a final `**` matches any rest, none included."""

    text: str
    method: str
    segments: tuple[str, ...]

    def matches(self, method: str, raw_path: str) -> bool:
        if self.method not in ("*", method):
            return False
        parts = raw_path.split("/")
        if self.segments and self.segments[-1] == "**":
            head = self.segments[:-1]
            return len(parts) >= len(head) and _segments_match(head, parts[: len(head)])
        return len(parts) == len(self.segments) and _segments_match(self.segments, parts)


def _segments_match(patterns: tuple[str, ...], parts: list[str]) -> bool:
    return all(
        pattern == part or ("*" in pattern and fnmatch.fnmatchcase(part, pattern))
        for pattern, part in zip(patterns, parts, strict=True)
    )


def parse_rule(text: str) -> Rule:
    """Parse "GET /v1/tasks/runs/*/input"; raise AllowError saying what is wrong."""
    words = text.split()
    if len(words) != 2:
        raise AllowError(f"Rule {text!r} is not 'METHOD /path', e.g. 'GET /v1/tasks/runs/*'.")
    method, path = words[0].upper(), words[1]
    if method not in METHODS:
        raise AllowError(f"Rule {text!r} has method {words[0]!r}; use one of {', '.join(METHODS)}.")
    if not path.startswith("/") or re.search(r"[?#\s]", path):
        raise AllowError(f"Rule {text!r} has path {path!r}; it must start with / and hold no ?.")
    segments = tuple(path.split("/"))
    if "**" in segments[:-1]:
        raise AllowError(f"Rule {text!r}: ** may only be the last segment.")
    return Rule(f"{method} {path}", method, segments)


def is_allowed(rules: tuple[Rule, ...] | None, method: str, raw_path: str) -> bool:
    """None means the key may use every route."""
    return rules is None or any(rule.matches(method, raw_path) for rule in rules)
