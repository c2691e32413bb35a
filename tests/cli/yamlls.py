"""A small Language Server Protocol client for the real YAML language server, over stdio.

Enough of LSP to do what an editor does with a manifest: open it, read the
diagnostics the server publishes, and ask for hover text. Messages are JSON-RPC
framed with ``Content-Length`` headers; a reader thread puts every message the
server sends on a queue, so a test waits on the queue with a deadline and a
dead or silent server fails the test instead of hanging it.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
WAIT = 30.0  # seconds: a cold Node.js start plus schema loading on a busy machine


def server_command() -> list[str]:
    """The pinned server, installed by ``scripts/yamlls`` (skip, or fail in CI, without npm)."""
    required = os.environ.get("XRESOURCE_REQUIRE_SERVICES") == "1"
    if shutil.which("npm") is None or shutil.which("node") is None:
        if required:
            pytest.fail("npm and node are needed for the editor-parity tests (XRESOURCE_REQUIRE_SERVICES=1)")
        pytest.skip("npm/node not installed: the YAML language server cannot be installed")
    result = subprocess.run(
        [str(ROOT / "scripts" / "yamlls")], capture_output=True, text=True, timeout=300, check=False
    )
    if result.returncode != 0:
        message = f"scripts/yamlls failed: {result.stderr.strip()[-2000:]}"
        if required:
            pytest.fail(message)
        pytest.skip(message)
    return [shutil.which("node") or "node", result.stdout.strip(), "--stdio"]


class LanguageServer:
    """One running server; use as a context manager."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._ids = itertools.count(1)
        self._messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self._pending: list[dict[str, Any]] = []
        self.process = subprocess.Popen(
            server_command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=root,
        )
        assert self.process.stdout is not None
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()

    def __enter__(self) -> LanguageServer:
        self.request(
            "initialize",
            {
                "processId": os.getpid(),
                "rootUri": self.root.as_uri(),
                "capabilities": {
                    "textDocument": {
                        "hover": {"contentFormat": ["markdown", "plaintext"]},
                        "publishDiagnostics": {},
                    }
                },
            },
        )
        self.notify("initialized", {})
        # Validation and hover on; no schema store (it would fetch from the network).
        settings = {"validate": True, "hover": True, "completion": True, "schemaStore": {"enable": False}}
        self.notify("workspace/didChangeConfiguration", {"settings": {"yaml": settings}})
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.request("shutdown", None)
            self.notify("exit", None)
            self.process.wait(timeout=10)
        except (OSError, AssertionError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()

    # ---- editor actions ------------------------------------------------------------------------

    def open(self, file: Path) -> str:
        uri = file.as_uri()
        item = {"uri": uri, "languageId": "yaml", "version": 1, "text": file.read_text()}
        self.notify("textDocument/didOpen", {"textDocument": item})
        return uri

    def diagnostics(self, uri: str, *, at_least: int = 1) -> list[dict[str, Any]]:
        """The first diagnostics published for ``uri`` with ``at_least`` entries."""
        deadline = time.monotonic() + WAIT
        while True:
            message = self._next(deadline, f"{at_least}+ diagnostics for {uri}")
            if message.get("method") == "textDocument/publishDiagnostics":
                params = message["params"]
                if params["uri"] == uri and len(params["diagnostics"]) >= at_least:
                    return list(params["diagnostics"])

    def publications_until(self, uri: str) -> dict[str, list[dict[str, Any]]]:
        """Every document's latest diagnostics, collected until ``uri``'s first arrive."""
        deadline = time.monotonic() + WAIT
        published: dict[str, list[dict[str, Any]]] = {}
        while uri not in published:
            message = self._next(deadline, f"diagnostics for {uri}")
            if message.get("method") == "textDocument/publishDiagnostics":
                published[message["params"]["uri"]] = list(message["params"]["diagnostics"])
        return published

    def hover(self, uri: str, line: int, character: int) -> str:
        result = self.request(
            "textDocument/hover",
            {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}},
        )
        assert result is not None, f"no hover at {line}:{character}"
        contents = result["contents"]
        return str(contents["value"] if isinstance(contents, dict) else contents)

    # ---- JSON-RPC ------------------------------------------------------------------------------

    def request(self, method: str, params: Any) -> Any:
        request_id = next(self._ids)
        self._send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        deadline = time.monotonic() + WAIT
        while True:
            message = self._next(deadline, f"the answer to {method}")
            if message.get("id") == request_id and "method" not in message:
                assert "error" not in message, message["error"]
                return message.get("result")
            self._pending.append(message)

    def notify(self, method: str, params: Any) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def _next(self, deadline: float, what: str) -> dict[str, Any]:
        if self._pending:
            return self._pending.pop(0)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"the YAML language server sent no {what} within {WAIT} s")
            try:
                message = self._messages.get(timeout=remaining)
            except queue.Empty:
                continue
            if "id" in message and "method" in message:  # a request from the server
                self._answer(message)
                continue
            return message

    def _answer(self, message: dict[str, Any]) -> None:
        result: Any = None
        if message["method"] == "workspace/configuration":
            items = message["params"]["items"]
            yaml_settings = {"validate": True, "hover": True, "schemaStore": {"enable": False}}
            result = [yaml_settings if item.get("section") == "yaml" else None for item in items]
        self._send({"jsonrpc": "2.0", "id": message["id"], "result": result})

    def _send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode()
        assert self.process.stdin is not None
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.process.stdin.flush()

    def _read(self, stream: IO[bytes]) -> None:
        while True:
            length = None
            while True:
                header = stream.readline()
                if not header:
                    return  # the server exited
                if header in (b"\r\n", b"\n"):
                    break
                name, _, value = header.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            if length is not None:
                self._messages.put(json.loads(stream.read(length)))
