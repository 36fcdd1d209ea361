"""Tests for the local stand-ins under localstack/."""
