"""What ``MongoResource.transaction()`` needs: its options, the support check, and its steps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    from pymongo.asynchronous.client_session import AsyncClientSession
    from pymongo.topology_description import TopologyDescription

MongoReadConcern = Literal["local", "majority", "snapshot"]
MongoWriteConcern = Literal["majority"] | int

# Deployments that run transactions; a single server counts when it is a replica set member or mongos.
_TOPOLOGIES = {"ReplicaSetWithPrimary", "Sharded", "LoadBalanced"}
_SERVERS = {"RSPrimary", "Mongos", "LoadBalancer"}


def transaction_options(
    label: str, read_concern: object, write_concern: object, max_commit_time: object
) -> dict[str, Any]:
    """Keyword arguments for ``start_transaction``, checked (a bad value fails before any I/O)."""
    from pymongo.read_concern import ReadConcern
    from pymongo.write_concern import WriteConcern

    options: dict[str, Any] = {}
    if read_concern is not None:
        if read_concern not in get_args(MongoReadConcern):
            raise ValueError(
                f"{label}: read_concern must be one of {', '.join(get_args(MongoReadConcern))}, "
                f"not {read_concern!r}"
            )
        options["read_concern"] = ReadConcern(str(read_concern))
    if write_concern is not None:
        members = (
            isinstance(write_concern, int) and not isinstance(write_concern, bool) and write_concern >= 0
        )
        if not (members or write_concern == "majority"):
            raise ValueError(
                f"{label}: write_concern must be 'majority' or a number of members, not {write_concern!r}"
            )
        options["write_concern"] = WriteConcern(
            w=write_concern if isinstance(write_concern, int) else "majority"
        )
    if max_commit_time is not None:
        if isinstance(max_commit_time, bool) or not isinstance(max_commit_time, int | float):
            raise TypeError(f"{label}: max_commit_time must be a number of seconds, not {max_commit_time!r}")
        if not max_commit_time > 0:
            raise ValueError(f"{label}: max_commit_time must be more than 0 seconds")
        options["max_commit_time_ms"] = max(1, round(max_commit_time * 1000))
    return options


def transactions_unsupported(topology: TopologyDescription) -> str | None:
    """Why this deployment cannot run transactions, or ``None`` when it can."""
    servers = topology.known_servers
    if topology.topology_type_name in _TOPOLOGIES or any(s.server_type_name in _SERVERS for s in servers):
        if topology.logical_session_timeout_minutes is None:
            return "the server does not support sessions"
        return None
    kinds = sorted({s.server_type_name for s in servers}) or ["unknown"]
    return f"the server is a {' / '.join(kinds).lower()} server, not a replica set member or mongos"


async def commit(session: AsyncClientSession) -> None:
    await session.commit_transaction()


async def abort(session: AsyncClientSession) -> None:
    await session.abort_transaction()
