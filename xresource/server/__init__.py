"""HTTP endpoints of ``xresource serve``: health, readiness, resources, metrics."""
