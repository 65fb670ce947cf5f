"""Tests for gateway/keys/."""
