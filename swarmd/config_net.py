"""The `monitor.toml` sections that name network endpoints: `[probes]`, `[web]` and
`[chain]`, read into their settings with the address checks they need.

Why apart from `config`: these are the only sections whose values are URLs, host:port
pairs, multiaddrs, host names and contract addresses, and the only ones where a wrong
value exposes something (a status page bound to the network, an RPC URL with an API
key echoed into an error). URLs are never echoed in errors: they often embed a key.
`config` assembles them into `Config`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from swarmd.toml_reader import Table

__all__ = ["ChainConfig", "ProbesConfig", "WebConfig", "read_chain", "read_probes", "read_web"]


@dataclass(frozen=True, slots=True)
class ChainConfig:
    rpc_url: str = ""  # JSON-RPC endpoint; "" disables the chain probe
    contract: str = ""  # coordinator address; "" = SWARM_CONTRACT from the node's env
    interval: float = 30.0
    timeout: float = 10.0
    stall_rounds: float = 3.0  # a round standing still this many round lengths is reported
    round_length: float = 0.0  # seconds; 0 = learn it from the advances seen


@dataclass(frozen=True, slots=True)
class ProbesConfig:
    urls: tuple[str, ...] = ()  # HTTP(S) URLs that must answer (any status < 500)
    tcp: tuple[str, ...] = ()  # "host:port" or multiaddrs (/ip4/1.2.3.4/tcp/5/p2p/...)
    dns: tuple[str, ...] = ()  # host names that must resolve
    interval: float = 30.0
    timeout: float = 5.0
    require_network: bool = True  # never start while the network probe fails


@dataclass(frozen=True, slots=True)
class WebConfig:
    enabled: bool = False
    bind: str = "127.0.0.1"
    port: int = 9464
    allow_remote: bool = False  # must be true to bind a non-loopback address


_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


def read_chain(t: Table) -> ChainConfig:
    d = ChainConfig()
    url = t.string("rpc_url", d.rpc_url)
    if url and not _URL.match(url):  # never echoed: RPC URLs often embed an API key
        raise t.error("rpc_url", "is not an http(s) URL", "write it as https://host/path, or \"\" for no chain probe")
    contract = t.string("contract", d.contract)
    if contract and not _ADDRESS.match(contract):
        raise t.error("contract", f"{t.ctx.show('contract', contract)} is not a 0x-prefixed 20-byte address",
                      "e.g. '0xFaD7C5e93f28257429569B854151A1B8DCD404c2', or \"\" to read SWARM_CONTRACT")
    interval = t.duration("interval", d.interval)
    timeout = t.duration("timeout", d.timeout)
    if timeout > interval:
        raise t.error("timeout", f"timeout ({timeout:g}s) is longer than interval ({interval:g}s)",
                      "make the timeout at most the interval, so reads never overlap")
    return ChainConfig(rpc_url=url, contract=contract, interval=interval, timeout=timeout,
                       stall_rounds=t.number("stall_rounds", d.stall_rounds, low=1.0),
                       round_length=t.duration("round_length", d.round_length, allow_zero=True))


_MULTIADDR_TCP = re.compile(r"^/(?:ip4|ip6|dns|dns4|dns6)/[^/]+/tcp/(\d+)(?:/.*)?$")
_HOST_PORT = re.compile(r"^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d+)$")
_URL = re.compile(r"^https?://[^/\s?#]+(?:[/?#]\S*)?$", re.IGNORECASE)
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_-]{1,63})*\.?$")


def read_probes(t: Table) -> ProbesConfig:
    d = ProbesConfig()
    urls = t.strings("urls")
    for number, url in enumerate(urls, 1):
        if not _URL.match(url):  # never echoed: RPC URLs often embed an API key
            raise t.error("urls", f"entry {number} is not an http(s) URL", "write it as https://host/path")
    tcp = t.strings("tcp")
    for target in tcp:
        match = _MULTIADDR_TCP.match(target) or _HOST_PORT.match(target)
        port = int(match.groups()[-1]) if match else 0
        if not 0 < port < 65536:
            raise t.error("tcp", f"{t.ctx.show('tcp', target)} is not host:port or a /ip4/.../tcp/PORT multiaddr",
                          "e.g. 'bootstrap.example.org:30011' or '/ip4/38.101.215.12/tcp/30011/p2p/Qm...'")
    dns = t.strings("dns")
    for host in dns:
        if not _HOSTNAME.match(host):
            raise t.error("dns", f"{t.ctx.show('dns', host)} is not a host name", "e.g. 'gensyn-testnet.g.alchemy.com'")
    interval = t.duration("interval", d.interval)
    timeout = t.duration("timeout", d.timeout)
    if timeout > interval:
        raise t.error("timeout", f"timeout ({timeout:g}s) is longer than interval ({interval:g}s)",
                      "make the timeout at most the interval, so probes never overlap")
    return ProbesConfig(urls=urls, tcp=tcp, dns=dns, interval=interval, timeout=timeout,
                        require_network=t.boolean("require_network", d.require_network))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_web(t: Table) -> WebConfig:
    d = WebConfig()
    bind = t.string("bind", d.bind)
    allow_remote = t.boolean("allow_remote", d.allow_remote)
    if not bind:
        raise t.error("bind", "must not be empty", "use 127.0.0.1")
    if not _is_loopback(bind) and not allow_remote:
        raise t.error("bind", f"{bind!r} is not a loopback address: the status page and /metrics would be reachable from the network",
                      "bind 127.0.0.1, or set allow_remote = true in [web] if that is intended")
    return WebConfig(enabled=t.boolean("enabled", d.enabled), bind=bind,
                     port=t.integer("port", d.port, low=0, high=65535), allow_remote=allow_remote)
