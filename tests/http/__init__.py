"""Tests for gateway/http/."""
