"""The ``xresource`` command line."""
