"""The contract every network (request/response) backend passes, written once.

A backend's test module subclasses :class:`NetworkContract` and supplies a
``server`` fixture (a real server on loopback, ``tests/support/http_servers.rest_app``)
and the hooks listed on the class; pytest then runs every test below against it.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import pytest

from tests.support import http_servers as hs
from tests.support.services import free_port
from tests.support.waiting import SLACK
from xresource.backends.network._base import NetworkResource
from xresource.errors import (
    XResourceAuthenticationError,
    XResourceConnectionError,
    XResourceError,
    XResourceQueryError,
    XResourceRequestError,
    XResourceStateError,
    XResourceTimeoutError,
    XResourceValidationError,
)
from xresource.factory import ResourceFactory
from xresource.resource import State


class NetworkContract:
    """Tests shared by the network backends.

    A subclass provides:

    - ``type_name`` and ``runtime_class`` (the slotted runtime ``connect`` builds);
    - fixture ``server``: a running ``hs.rest_app()`` (``.url``);
    - ``make(url, **fields)``: an unconnected resource for ``url`` (fast retries);
    - ``call(res, path, **options)``: one request through the resource's API,
      returning the parsed answer;
    - ``bearer(res_fields)``: the fields that authenticate with ``${env:API_TOKEN}``.
    """

    type_name: ClassVar[str]
    runtime_class: ClassVar[type]

    def make(self, url: str, **fields: Any) -> NetworkResource:
        raise NotImplementedError

    async def call(self, res: Any, path: str, **options: Any) -> Any:
        raise NotImplementedError

    def bearer(self) -> dict[str, Any]:
        raise NotImplementedError

    @pytest.fixture(autouse=True)
    def _token(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("API_TOKEN", hs.BEARER_TOKEN)

    # ---- lifecycle ------------------------------------------------------------------------

    async def test_connect_validate_disconnect_twice(self, server: Any) -> None:
        res = self.make(server.url)
        assert res._rt is None
        assert not await res.validate_connection()
        with pytest.raises(XResourceStateError, match="not connected"):
            await self.call(res, "/echo")
        await res.connect()
        assert isinstance(res._rt, self.runtime_class)
        assert not hasattr(res._rt, "__dict__")  # slotted: read once per request
        assert copy.copy(res)._rt is None  # a copy is unconnected
        assert await res.validate_connection()
        assert (await self.call(res, "/echo"))["method"] == "GET"
        await res.disconnect()
        await res.disconnect()
        assert res.state is State.CLOSED
        assert res._rt is None
        with pytest.raises(XResourceStateError, match="not connected"):
            await self.call(res, "/echo")
        async with res:  # a closed resource connects again
            assert (await self.call(res, "/echo"))["method"] == "GET"

    async def test_unreachable_server_fails_connect(self) -> None:
        res = self.make(f"http://127.0.0.1:{free_port()}")
        with pytest.raises(XResourceConnectionError) as info:
            await res.connect()
        assert not isinstance(info.value, XResourceTimeoutError | XResourceRequestError)
        assert res.state is State.FAILED
        assert res._rt is None
        assert res.label in str(info.value)

    # ---- errors ---------------------------------------------------------------------------

    @pytest.mark.parametrize(
        ("status", "expected", "retry_may_help"),
        [
            (400, XResourceQueryError, False),
            (404, XResourceQueryError, False),
            (409, XResourceQueryError, False),
            (422, XResourceQueryError, False),
            (401, XResourceAuthenticationError, True),
            (403, XResourceAuthenticationError, True),
            (408, XResourceRequestError, True),
            (429, XResourceRequestError, True),
            (500, XResourceRequestError, True),
            (503, XResourceRequestError, True),
        ],
    )
    async def test_error_statuses_follow_the_retry_rule(
        self, server: Any, status: int, expected: type[XResourceError], retry_may_help: bool
    ) -> None:
        async with self.make(server.url, retries=0) as res:
            with pytest.raises(expected) as info:
                await self.call(res, f"/status/{status}")
        assert info.value.status == status  # type: ignore[attr-defined]
        assert isinstance(info.value, XResourceConnectionError) is retry_may_help
        assert res.label in str(info.value)

    async def test_slow_answer_is_a_timeout(self, server: Any) -> None:
        async with self.make(server.url, timeout=0.2, retries=0) as res:
            with pytest.raises(XResourceTimeoutError, match=r"0\.2s"):
                await self.call(res, "/slow", params={"delay": 0.2 + SLACK + 1})

    # ---- secrets and bad input ------------------------------------------------------------

    async def test_secrets_never_shown(self, server: Any) -> None:
        res = self.make(server.url, **self.bearer())
        shown = [repr(res), str(res.get_metadata()), res.model_dump_json()]
        async with res:
            assert (await self.call(res, "/secure/bearer"))["ok"] is True
            shown += [repr(res), str(res.get_metadata()), str(res.model_dump())]
            with pytest.raises(XResourceQueryError) as info:
                await self.call(res, "/leaky", params={"note": "x"})  # the server echoes the token
            shown.append(str(info.value))
        assert not any(hs.BEARER_TOKEN in text for text in shown)

    @pytest.mark.parametrize(
        ("fields", "field"),
        [
            ({"endpoint": "ftp://host/x"}, "endpoint"),
            ({"endpoint": "https://user:literal-pw@host/"}, "endpoint"),
            ({"endpoint": "https://host/", "headers": {"Authorization": "Bearer literal-token"}}, "headers"),
            ({"endpoint": "https://host/", "timeout": 0}, "timeout"),
            ({"endpoint": "https://host/", "retries": -1}, "retries"),
            ({"endpoint": "https://host/", "unknown": 1}, "unknown"),
        ],
    )
    def test_bad_manifests_are_validation_errors_that_name_the_field(
        self, fields: dict[str, Any], field: str
    ) -> None:
        with pytest.raises(XResourceValidationError) as info:
            ResourceFactory.create(self.type_name, name="api", **fields)
        assert any(problem.field and problem.field.startswith(field) for problem in info.value.problems)
        assert "literal-pw" not in str(info.value)
        assert "literal-token" not in str(info.value)
