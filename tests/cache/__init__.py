"""Tests for gateway/cache/."""
