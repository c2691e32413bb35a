"""The operator's status page: server-rendered HTML, live over Server-Sent Events.

``history`` keeps what the page charts (bounded samples, a bounded reload
timeline), ``render`` turns a registry snapshot into escaped HTML, ``routes``
mounts it on aiohttp. The page's CSS and script ship in ``static/``.
"""
