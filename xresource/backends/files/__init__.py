"""Files backends."""
