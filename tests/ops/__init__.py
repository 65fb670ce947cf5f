"""Tests for gateway/ops/."""
