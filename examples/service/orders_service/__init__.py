"""A small orders service that embeds an xresource registry (see ../README.md)."""
