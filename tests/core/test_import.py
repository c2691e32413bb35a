"""The public surface and a light import."""

from __future__ import annotations

import subprocess
import sys

import xresource

DRIVERS = [
    "asyncpg", "aiomysql", "pymysql", "pymongo", "motor", "aiohttp", "websockets", "redis", "aiokafka",
    "aio_pika", "aiormq", "aiomqtt", "paho", "httpx", "httpx_sse", "openpyxl", "ijson", "dynaconf",
    "watchfiles", "prometheus_client", "jsonschema",
]


def test_import_loads_no_backend_driver() -> None:
    code = (
        "import sys, json, xresource\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(__import__("json").loads(out))
    assert not loaded & set(DRIVERS), f"import xresource loaded drivers: {sorted(loaded & set(DRIVERS))}"


def test_every_backend_module_imports_without_its_driver() -> None:
    """Models (and so schemas) must be available with no extra installed: block every driver."""
    code = (
        "import sys\n"
        f"for name in {DRIVERS!r}:\n"
        "    sys.modules[name] = None  # makes `import name` raise ImportError\n"
        "from xresource.factory import ResourceFactory\n"
        "from xresource.schema import all_schemas\n"
        "print(len(ResourceFactory.all_classes()), len(all_schemas()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["14", "15"]


def test_all_matches_public_names() -> None:
    public = {n for n in dir(xresource) if not n.startswith("_")} | set(xresource._LAZY)
    public -= {"annotations", "TYPE_CHECKING", "Any", "errors", "factory", "prototype", "resource", "secrets"}
    public = {n for n in public if not n.islower() or n == "__version__"}
    assert set(xresource.__all__) - {"__version__"} == public - {"__version__"}
    for name in xresource.__all__:
        assert getattr(xresource, name) is not None


def test_design_names_exported() -> None:
    for name in (
        "XObjPrototype", "ResourceMetadata", "XResource", "FileResource", "DatabaseResource",
        "NetworkResource", "EventStreamResource", "ResourceFactory", "Registry", "XResourceError",
        "XResourceConnectionError", "XResourceTimeoutError", "XResourcePoolExhaustedError",
        "XResourceNotFoundError", "UnknownResourceTypeError", "ManifestError",
    ):
        assert name in xresource.__all__
    assert issubclass(xresource.XResourceNotFoundError, KeyError)
    assert issubclass(xresource.UnknownResourceTypeError, ValueError)
    assert issubclass(xresource.FileResource, xresource.XResource)
    assert issubclass(xresource.XResourcePoolExhaustedError, xresource.XResourceError)
