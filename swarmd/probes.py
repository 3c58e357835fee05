"""Health probes: is the network there, how old is the heartbeat (p2pd: `p2pd_probe`).

Each probe returns a `ProbeResult` and never decides anything; `policy` does. Every
call is bounded: DNS lookups have no timeout of their own (getaddrinfo follows
resolv.conf, which can mean tens of seconds), so lookups and whole probes run on daemon
threads that the caller stops waiting for at the deadline.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from urllib.parse import urlsplit

import requests

from swarmd.config_net import ProbesConfig
from swarmd.domain import ProbeResult
from swarmd.heartbeat import Heartbeat

_GRACE = 1.0  # seconds beyond a probe's own timeout before its thread is abandoned


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def _run_bounded(fn: Callable[[], ProbeResult], timeout: float, name: str, target: str) -> ProbeResult:
    """Run `fn` on a daemon thread and stop waiting after `timeout` (the thread may
    linger in a blocking lookup; being a daemon it never blocks interpreter exit)."""
    box: list[ProbeResult] = []
    thread = threading.Thread(target=lambda: box.append(fn()), name=f"probe-{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if box:
        return box[0]
    return ProbeResult(name, False, f"{target}: no answer within {timeout:g}s")


def safe_url(url: str) -> str:
    """The URL without credentials, query or fragment: tokens often ride there."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return f"{parts.scheme}://{netloc}{parts.path}"


def probe_http(url: str, timeout: float, session: requests.Session | None = None) -> ProbeResult:
    """OK when the server answers at all below 500: a 404 or 401 still proves the path
    to it works, which is all a network probe asks."""
    started = time.monotonic()
    shown = safe_url(url)
    own = session is None
    sess = requests.Session() if session is None else session
    try:
        with sess.get(url, timeout=(timeout, timeout), stream=True, allow_redirects=False) as resp:
            status = resp.status_code
    except requests.RequestException as err:
        return ProbeResult("http", False, f"{shown}: {type(err).__name__}", _ms(started))
    finally:
        if own:
            sess.close()
    return ProbeResult("http", status < 500, f"{shown}: HTTP {status}", _ms(started))


@dataclass(frozen=True, slots=True)
class TcpTarget:
    host: str
    port: int
    family: int = socket.AF_UNSPEC


_MADDR_FAMILY = {"ip4": socket.AF_INET, "ip6": socket.AF_INET6, "dns4": socket.AF_INET,
                 "dns6": socket.AF_INET6, "dns": socket.AF_UNSPEC, "dnsaddr": socket.AF_UNSPEC}


def parse_tcp_target(target: str) -> TcpTarget:
    """`host:port`, `[v6]:port`, or a multiaddr `/ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>/...`
    (the /p2p/<peer id> suffix of a bootstrap address is ignored). ValueError if neither."""
    if target.startswith("/"):
        parts = target.split("/")
        if len(parts) >= 5 and parts[1] in _MADDR_FAMILY and parts[3] == "tcp":
            return TcpTarget(parts[2], _port(parts[4], target), _MADDR_FAMILY[parts[1]])
        raise ValueError(f"not a TCP multiaddr: {target!r}")
    host, sep, port = target.rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected host:port, got {target!r}")
    return TcpTarget(host.strip("[]"), _port(port, target))


def _port(text: str, target: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"bad TCP port in {target!r}")
    return int(text)


def _resolve(host: str, port: int, family: int, timeout: float) -> list[tuple[int, str]]:
    """(family, address) pairs from getaddrinfo, bounded by `timeout`; raises OSError."""
    found: list[tuple[int, str]] = []
    failed: list[OSError] = []

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
        except OSError as err:
            failed.append(err)
            return
        found.extend((fam, str(addr[0])) for fam, _type, _proto, _name, addr in infos)

    thread = threading.Thread(target=lookup, name=f"dns-{host}", daemon=True)
    thread.start()
    thread.join(timeout)
    if failed:
        raise failed[0]
    if thread.is_alive():
        raise TimeoutError(f"DNS lookup of {host} took over {timeout:g}s")
    return found


def probe_tcp(target: str, timeout: float) -> ProbeResult:
    """Can we open a TCP connection (bootstrap peer, RPC endpoint) within `timeout`?"""
    started = time.monotonic()
    try:
        tgt = parse_tcp_target(target)
        infos = _resolve(tgt.host, tgt.port, tgt.family, timeout)
    except (OSError, ValueError) as err:
        return ProbeResult("tcp", False, f"{target}: {err}", _ms(started))
    last: OSError | None = None
    for fam, addr in infos:
        remaining = timeout - (time.monotonic() - started)
        if remaining <= 0:
            break
        try:
            with socket.socket(fam, socket.SOCK_STREAM) as sock:
                sock.settimeout(remaining)
                sock.connect((addr, tgt.port))
        except OSError as err:
            last = err
            continue
        return ProbeResult("tcp", True, f"{target}: connected", _ms(started))
    reason = "timed out" if last is None else (last.strerror or str(last) or type(last).__name__)
    return ProbeResult("tcp", False, f"{target}: {reason}", _ms(started))


def probe_dns(host: str, timeout: float) -> ProbeResult:
    started = time.monotonic()
    try:
        infos = _resolve(host, 443, socket.AF_UNSPEC, timeout)
    except OSError as err:
        return ProbeResult("dns", False, f"{host}: {err}", _ms(started))
    if not infos:
        return ProbeResult("dns", False, f"{host}: no addresses", _ms(started))
    return ProbeResult("dns", True, f"{host}: {infos[0][1]}", _ms(started))


def network_checks(cfg: ProbesConfig) -> tuple[ProbeResult, ...]:
    """Every configured check, run in parallel, each bounded by `cfg.timeout` (+grace)."""
    jobs: list[tuple[str, str, Callable[[], ProbeResult]]] = []
    t = cfg.timeout
    jobs += [("http", u, partial(probe_http, u, t)) for u in cfg.urls]
    jobs += [("tcp", a, partial(probe_tcp, a, t)) for a in cfg.tcp]
    jobs += [("dns", h, partial(probe_dns, h, t)) for h in cfg.dns]
    results: list[ProbeResult | None] = [None] * len(jobs)

    def run(i: int) -> None:
        name, target, fn = jobs[i]
        shown = safe_url(target) if name == "http" else target
        results[i] = _run_bounded(fn, 2 * t + _GRACE, name, shown)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(jobs))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()  # each run() returns within its own bound
    return tuple(r for r in results if r is not None)


def summarise_network(results: Sequence[ProbeResult]) -> ProbeResult:
    """URLs and DNS names must all answer; of the TCP targets one suffices, because
    they are alternatives (hivemind bootstraps from any reachable initial peer, and
    one dead bootstrap peer must not keep the trainer from starting)."""
    if not results:
        return ProbeResult("network", None, "no network checks configured")
    tcp = [r for r in results if r.name == "tcp"]
    must = [r for r in results if r.name != "tcp"]
    failing = [r for r in must if not r.ok]
    if tcp and not any(r.ok for r in tcp):
        failing += tcp
    latency = max((r.latency_ms for r in results if r.latency_ms is not None), default=None)
    if failing:
        return ProbeResult("network", False, "; ".join(r.detail for r in failing), latency)
    return ProbeResult("network", True, f"{len(results)} checks ok", latency)


def probe_network(cfg: ProbesConfig) -> ProbeResult:
    """All configured checks in parallel; `ok=None` when none are configured."""
    return summarise_network(network_checks(cfg))


def heartbeat_age(hb: Heartbeat | None, now_wall: float) -> float | None:
    """Seconds since the trainer last wrote its heartbeat (None: no heartbeat, or one
    without a timestamp). Clamped at 0: a wall clock stepped back is not "fresh+"."""
    if hb is None or hb.written_at is None:
        return None
    return max(0.0, now_wall - hb.written_at)


def progress_age(hb: Heartbeat | None, now_wall: float) -> float | None:
    """Seconds since the trainer last reported a training step (None if never)."""
    if hb is None or hb.last_progress is None:
        return None
    return max(0.0, now_wall - hb.last_progress)
