"""Streams backends."""
