"""``xresource serve`` (a real subprocess: SIGHUP, SIGTERM), ``xresource check`` and ``xresource plan``."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.registry.support import ApiServer, csv_manifest, fast_settings, rest_manifest
from tests.server.support import Serve
from tests.support.http_servers import start_app
from tests.support.services import free_port
from tests.support.waiting import eventually, stays
from xresource.cli.main import main
from xresource.registry import Registry
from xresource.server.app import create_app


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_serve_reloads_on_sighup_and_exits_0_on_sigterm(
    tmp_path: Path, manifests: Path, data: Path, http: aiohttp.ClientSession
) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    serve = Serve(tmp_path, manifests, "--no-watch")  # only SIGHUP can reload it
    try:
        await serve.wait_up(http)
        assert list(await serve.resources(http)) == ["a"]
        (manifests / "b.yaml").write_text(csv_manifest("b", data / "b.csv"))
        (manifests / "a.yaml").write_text(csv_manifest("a", data / "b.csv", "description: v2"))
        await stays(  # not watching: nothing changes until SIGHUP
            lambda: _rows_are(serve, http, ["a"]), duration=0.1, what="no reload without SIGHUP"
        )
        serve.proc.send_signal(signal.SIGHUP)
        rows = await _until(lambda rows: "b" in rows, serve, http)
        assert rows["a"]["generation"] == 2
        assert rows["a"]["metadata"]["description"] == "v2"
        assert rows["b"]["state"] == "ready"
    finally:
        code, err = serve.stop(signal.SIGTERM)
    assert code == 0, err
    assert "reload" in err
    assert "draining and closing" in err
    assert "stopped" in err


async def test_serve_watches_by_default(
    tmp_path: Path, manifests: Path, data: Path, http: aiohttp.ClientSession
) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    serve = Serve(tmp_path, manifests)
    try:
        await serve.wait_up(http)
        (manifests / "a.yaml").write_text("name: a\ntype: csv\nfile_path: [\n")
        rows = await _until(lambda rows: rows["a"]["error"], serve, http)
        assert "a.yaml:4:1" in rows["a"]["error"]
        assert rows["a"]["state"] == "ready"
    finally:
        code, err = serve.stop(signal.SIGINT)
    assert code == 0, err


async def test_serve_refuses_an_invalid_folder(tmp_path: Path, manifests: Path) -> None:
    (manifests / "bad.yaml").write_text("name: x\ntype: csv\n")
    serve = Serve(tmp_path, manifests)
    code, err = await asyncio.to_thread(serve.stop, 0)  # signal 0: just wait for the exit
    assert code == 1
    assert "bad.yaml" in err
    assert "file_path: required field is missing" in err


async def _until(
    predicate: Any, serve: Serve, http: aiohttp.ClientSession, timeout: float = 10
) -> dict[str, dict[str, Any]]:
    seen: list[dict[str, dict[str, Any]]] = []

    async def matches() -> dict[str, dict[str, Any]] | None:
        rows = await serve.resources(http)
        seen[:] = [rows]
        return rows if predicate(rows) else None

    found = await eventually(
        matches, timeout=timeout, interval=0.03, what=f"/resources to match; last {seen}"
    )
    assert found is not None
    return found


async def _rows_are(serve: Serve, http: aiohttp.ClientSession, names: list[str]) -> bool:
    return list(await serve.resources(http)) == names


# ---- check ----------------------------------------------------------------------------------


def test_check_exit_0_when_all_healthy(
    manifests: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    (manifests / "b.yaml").write_text(csv_manifest("b", data / "b.csv"))
    assert main(["check", str(manifests)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "STATE", "LATENCY", "ERROR"]
    assert [line.split()[:3] for line in lines[-2:]] == [["a", "csv", "healthy"], ["b", "csv", "healthy"]]
    assert " ms" in lines[-1]


def test_check_exit_1_when_one_is_unhealthy(
    manifests: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    (manifests / "gone.yaml").write_text(csv_manifest("gone", data / "missing.csv"))
    port = free_port()
    (manifests / "api.yaml").write_text(rest_manifest("api", f"http://127.0.0.1:{port}"))
    assert main(["check", "--format", "json", str(manifests)]) == 1
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["a"]["state"] == "healthy"
    assert rows["a"]["error"] is None
    assert rows["gone"]["state"] == "unhealthy"
    assert "does not exist" in rows["gone"]["error"]
    assert rows["api"]["state"] == "unhealthy"
    assert f"127.0.0.1:{port}" in rows["api"]["error"]
    assert all(isinstance(r["latency_ms"], float) for r in rows.values())


def test_check_exit_1_on_an_invalid_manifest(
    manifests: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    (manifests / "bad.yaml").write_text("name: b\ntype: csv\nfile_path: x\nnope: 1\n")
    assert main(["check", str(manifests)]) == 1
    captured = capsys.readouterr()
    assert "bad.yaml:4:1: b: nope: unknown field" in captured.err
    assert "healthy" in captured.out  # the valid ones are still checked


def test_check_times_out_instead_of_hanging(manifests: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async def scenario() -> int:
        from tests.registry.support import black_hole

        server, close = await black_hole()
        port = server.sockets[0].getsockname()[1]
        (manifests / "hang.yaml").write_text(rest_manifest("hang", f"http://127.0.0.1:{port}"))
        try:
            return await asyncio.to_thread(main, ["check", "--timeout", "0.3", str(manifests)])
        finally:
            await close()

    assert asyncio.run(scenario()) == 1
    assert "no answer within 0.3s" in capsys.readouterr().out


# ---- plan -----------------------------------------------------------------------------------


def _deployed_and_proposed(tmp_path: Path, data: Path) -> tuple[Path, Path]:
    base, head = tmp_path / "base", tmp_path / "head"
    base.mkdir()
    head.mkdir()
    for folder in (base, head):
        (folder / "same.yaml").write_text(csv_manifest("same", data / "a.csv"))
    (base / "changed.yaml").write_text(csv_manifest("changed", data / "a.csv"))
    (head / "changed.yaml").write_text(csv_manifest("changed", data / "b.csv"))
    (base / "gone.yaml").write_text(csv_manifest("gone", data / "a.csv"))
    (head / "new.yaml").write_text(csv_manifest("new", data / "b.csv"))
    # Running now, and its file is broken in the change: it is kept, not removed.
    (base / "kept.yaml").write_text(csv_manifest("kept", data / "a.csv"))
    (head / "kept.yaml").write_text("name: kept\ntype: csv\nfile_path: [\n")
    return base, head


EXPECTED_TEXT = [
    "+   add              new (csv)",
    "      + file_path: ",
    "-/+ replace          changed (csv)",
    "      ~ file_path: ",
    "-   remove           gone (csv)",
    "      - file_path: ",
    "!   rejected         kept (csv)  keeps running as deployed until its file is fixed",
]


def test_plan_against_a_folder(tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, head = _deployed_and_proposed(tmp_path, data)
    assert main(["plan", str(head), "--against", str(base)]) == 1  # 1: a manifest would be rejected
    lines = capsys.readouterr().out.splitlines()
    assert [line[: len(want)] for line, want in zip(lines, EXPECTED_TEXT, strict=False)] == EXPECTED_TEXT
    assert "kept.yaml:4:1: invalid YAML" in lines[7]
    assert lines[-1] == "plan: 1 to add, 1 to replace, 1 to remove, 2 unchanged, 1 problem(s)"
    assert not any("kept" in line for line in lines if line.startswith(("+", "-/+", "-", "~")))


def test_plan_json_and_clean_exit(tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, head = _deployed_and_proposed(tmp_path, data)
    (head / "kept.yaml").write_text(csv_manifest("kept", data / "a.csv"))
    assert main(["plan", str(head), "--against", str(base), "--format", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in plan["added"]] == ["new"]
    assert [r["name"] for r in plan["replaced"]] == ["changed"]
    assert [r["name"] for r in plan["removed"]] == ["gone"]
    assert sorted(plan["unchanged"]) == ["kept", "same"]
    assert plan["rejected"] == []
    assert plan["problems"] == []


def test_plan_does_not_add_what_a_broken_file_defines(
    tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, head = tmp_path / "base", tmp_path / "head"
    base.mkdir()
    head.mkdir()
    # One document is fine, the other is not: the registry rejects the whole file, so
    # the plan must not promise the fine one.
    (head / "pair.yaml").write_text(csv_manifest("fine", data / "a.csv") + "---\nname: broken\ntype: csv\n")
    assert main(["plan", str(head), "--against", str(base)]) == 1
    out = capsys.readouterr().out
    assert "+   add" not in out
    assert "!   rejected" in out
    assert "pair.yaml" in out


async def test_plan_against_a_running_serve(
    tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, head = _deployed_and_proposed(tmp_path, data)
    async with Registry(base, settings=fast_settings()) as registry:
        server = await start_app(create_app(registry))
        try:
            code = await asyncio.to_thread(main, ["plan", str(head), "--against", server.url + "/"])
        finally:
            await server.stop()
    assert code == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line[: len(want)] for line, want in zip(lines, EXPECTED_TEXT, strict=False)] == EXPECTED_TEXT
    assert lines[-1] == "plan: 1 to add, 1 to replace, 1 to remove, 2 unchanged, 1 problem(s)"


def test_plan_against_nothing_listening(
    tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["plan", str(tmp_path), "--against", url]) == 1
    assert f"cannot read {url}" in capsys.readouterr().err


async def test_plan_against_serve_with_markdown(
    tmp_path: Path, data: Path, api: ApiServer, capsys: pytest.CaptureFixture[str]
) -> None:
    base, head = _deployed_and_proposed(tmp_path, data)
    (head / "kept.yaml").write_text(csv_manifest("kept", data / "a.csv"))
    async with Registry(base, settings=fast_settings()) as registry:
        server = await start_app(create_app(registry))
        try:
            await eventually(lambda: registry.ready)
            code = await asyncio.to_thread(
                main, ["plan", str(head), "--against", server.url, "--format", "markdown"]
            )
        finally:
            await server.stop()
    assert code == 0
    out = capsys.readouterr().out
    assert "| `+` | add | `new` | `csv` |" in out
    assert "| `-` | remove | `gone` | `csv` |" in out
    assert "2 unchanged" in out
