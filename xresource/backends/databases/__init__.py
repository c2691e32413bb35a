"""Databases backends."""
