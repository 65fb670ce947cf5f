"""Tests for gateway/cli/."""
