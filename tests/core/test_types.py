"""Types that tell: the module ``xresource stubs`` writes lets mypy see each resource's driver types."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from xresource.cli.main import main

APP = """
from xresource import Registry

from resources_types import typed


async def main(registry: Registry) -> None:
    reg = typed(registry)
    async with reg.get("catalog").acquire() as session:
        reveal_type(session)
    reveal_type(await reg.get("orders").read())
    async for chunk in reg.get("orders").read_stream(10):
        reveal_type(chunk)
    reveal_type(reg.get("catalog").get_collection("items"))
    reveal_type(reg.get("catalog").client)
    async with reg.get("users").acquire() as conn:  # asyncpg ships no type hints: Any without asyncpg-stubs
        await conn.execute("SELECT 1")
"""


CSV_ROWS = (
    '"list[dict[str, str | int | float | decimal.Decimal | bool | datetime.date | datetime.datetime | None]'
    ' | list[str]]"'
)


@pytest.mark.timeout(300)
def test_stubs_carry_the_driver_types(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "resources.d"
    folder.mkdir()
    (folder / "users.yaml").write_text(
        "name: users\ntype: postgresql\nconnection_string: postgresql://app@h/app\n"
    )
    (folder / "catalog.yaml").write_text("name: catalog\ntype: mongodb\nconnection_string: mongodb://h/app\n")
    (folder / "orders.yaml").write_text("name: orders\ntype: csv\nfile_path: orders.csv\n")
    assert main(["stubs", str(folder), "--out", str(tmp_path / "resources_types.py")]) == 0
    capsys.readouterr()
    (tmp_path / "app.py").write_text(APP)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "app.py", "resources_types.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=280,
    )
    revealed = [
        line.split("Revealed type is ", 1)[1] for line in done.stdout.splitlines() if "Revealed" in line
    ]
    assert revealed == [
        '"pymongo.asynchronous.client_session.AsyncClientSession"',
        CSV_ROWS,
        CSV_ROWS,
        '"pymongo.asynchronous.collection.AsyncCollection[Any]"',
        '"pymongo.asynchronous.mongo_client.AsyncMongoClient[Any]"',
    ], done.stdout
    assert "error" not in done.stdout, done.stdout
