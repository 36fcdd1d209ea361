"""Adapters: the real SDK behind each port."""
