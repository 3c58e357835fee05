"""One-line texts for the node's p2pd and the chain, shared by `swarmd status` and the
status page (pure: snapshot dicts in, text out)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def p2pd_line(d: Mapping[str, Any]) -> str:
    """The node's p2pd as swarmd sees it from outside (no heartbeat needed)."""
    pid = d.get("p2pd_pid")
    if d.get("p2pd_alive") is False:
        return f"DEAD: {d.get('p2pd_evidence') or 'gone'}"
    if pid is None:
        return "-"
    said = d.get("p2pd_answered")
    answered = "answers" if said is True else "not answering" if said is False else "no control socket"
    dht = f", DHT process {d['dht_pid']}" if d.get("dht_pid") else ""
    settled = "" if d.get("p2pd_alive") else " (starting)"
    return f"pid {pid}{dht}, {answered}{settled}"


def chain_line(c: Mapping[str, Any]) -> str:
    """The chain as swarmd reads it: RPC reachable, the coordinator's round."""
    if not c.get("enabled"):
        return "not probed ([chain] rpc_url unset)"
    if c.get("rpc_ok") is None:
        return "not read yet"
    if not c.get("rpc_ok"):
        return f"RPC DOWN: {c.get('detail', '')}"
    where = f"chain {c.get('chain_id')}, block {c.get('block')}"
    if c.get("round") is None:
        return f"RPC ok, {where}, no round ({c.get('detail', '')})" if c.get("contract") else f"RPC ok, {where}"
    return f"round {c.get('round')} stage {c.get('stage')}, RPC ok, {where}"
