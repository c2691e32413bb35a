"""Use a registry inside your own web service: one small module per framework.

- ``xresource.integrations.aiohttp``: a ``cleanup_ctx`` that starts and stops a
  registry with the app, and ``add_routes`` for ``/healthz``, ``/readyz``,
  ``/resources`` and ``/metrics`` under a prefix.
- ``xresource.integrations.starlette``: a lifespan, FastAPI dependencies that
  give a resource or a lease, and the same routes.

Both answer from ``xresource.server.probes.RegistryProbes``, the code
``xresource serve`` answers from, and apply the same Host and reload checks.
"""
