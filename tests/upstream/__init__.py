"""Tests for gateway/upstream/."""
