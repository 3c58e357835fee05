"""`python -m trainer --config trainer.toml [--override key=value]... [--peers N]`

Exit codes (swarmd's `fatal_exit_codes` default to 2 and 78):
  0  intended stop (SIGTERM/SIGINT, or `max_rounds` reached)
  1  unexpected error (traceback on stderr): restartable
  2  configuration error (one line naming file:key and the fix): fatal
  78 unusable identity file (one line naming the file and the fix): fatal

`--peers N` (or `local_swarm_peers = N-1`) makes this process also run N-1 helper peers
on loopback as its own children, so `swarmd run` supervising ONE command gets a real
multi-peer swarm for the demo. Helpers stay in our process group (swarmd's group kill
ends them), write to `<state_dir>/peerK/trainer.log`, and are restarted if they die.

torch is imported only after the config and identity checks, so those errors come back
in milliseconds.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import IO, Any

from swarmd.clock import SystemClock
from swarmd.errors import ConfigError
from trainer import config as config_mod
from trainer.identity import Identity, IdentityError, load_or_create
from trainer.node import Flags

EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 69  # sysexits EX_UNAVAILABLE: the chain RPC is down at start; swarmd restarts with back-off


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    overrides = tuple(args.override)
    if args.peers is not None:
        overrides += (f"local_swarm_peers={max(0, args.peers - 1)}",)
    try:
        cfg = config_mod.load(Path(args.config), overrides)
    except ConfigError as exc:
        print(f"trainer: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        ident = load_or_create(cfg.identity_path)
    except IdentityError as exc:
        print(f"trainer: {exc}", file=sys.stderr)
        return exc.exit_code
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(levelname)s:%(name)s:%(message)s")
    flags = Flags()
    _install_signals(flags)
    return _run(cfg, ident, flags, Path(args.config), overrides)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m trainer", description="An RL swarm training node.")
    p.add_argument("--config", default="trainer.toml", help="TOML file (default: trainer.toml)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key (TOML value syntax); repeatable")
    p.add_argument("--peers", type=int, default=None,
                   help="run a local swarm of N peers: this one plus N-1 helper children")
    return p.parse_args(argv)


def _install_signals(flags: Flags) -> None:
    main_pid = os.getpid()

    def on_stop(signum: int, _frame: FrameType | None) -> None:
        if os.getpid() != main_pid:  # a forked child (hivemind's DHT process): default action
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        flags.stop = True

    def on_usr1(_signum: int, _frame: FrameType | None) -> None:
        if os.getpid() == main_pid:
            flags.reconnect = True

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGUSR1, on_usr1)


def _run(cfg: config_mod.NodeConfig, ident: Identity, flags: Flags, config_path: Path,
         overrides: tuple[str, ...]) -> int:
    from trainer.coordinator import Coordinator, DhtCoordinator
    from trainer.dht import DhtExchange, SwarmDht, read_peers_file, write_peers_file
    from trainer.exchange import RolloutExchange
    from trainer.genrl_compat import COMPAT as GENRL_03
    from trainer.genrl_compat import GenrlExchange, GenrlRoundClock
    from trainer.node import LoopSettings, Node

    chain = None
    if cfg.chain_rpc_url:
        from trainer.coordinator.settings import ChainSettingError

        try:
            chain = _open_chain(cfg, ident)
        except ChainSettingError as exc:
            print(f"trainer: {config_path}: {exc}", file=sys.stderr)
            return EXIT_UNAVAILABLE if exc.transient else EXIT_CONFIG
    peers = list(cfg.initial_peers)
    if cfg.initial_peers_file is not None:
        peers += [p for p in read_peers_file(cfg.initial_peers_file, ident.peer_id) if p not in peers]
    if chain is not None:
        peers += [p for p in chain.bootnodes(exclude=ident.peer_id) if p not in peers]
    dht = SwarmDht(cfg.identity_path, host_maddrs=cfg.host_maddrs, announce_maddrs=cfg.announce_maddrs,
                   initial_peers=peers, startup_timeout=cfg.dht_startup_timeout,
                   attempts=cfg.dht_start_attempts)
    helpers: LocalSwarm | None = None
    try:
        if peers:
            print(f"🐝 Joining swarm with initial_peers = {peers}", flush=True)
        dht.start()
        if dht.peer_id != ident.peer_id:
            raise RuntimeError(f"DHT reports peer id {dht.peer_id}, identity file gives {ident.peer_id}")
        if not peers:
            print(f"🤖 Starting swarm at {' '.join(dht.visible_maddrs())}", flush=True)
            if cfg.initial_peers_file is not None:
                write_peers_file(cfg.initial_peers_file, dht.visible_maddrs())
        print(f"🐱 Hello 🐈 [{ident.animal}] 🦮 [{ident.peer_id}]!", flush=True)
        if cfg.local_swarm_peers:
            helpers = LocalSwarm(config_path, overrides, cfg, dht.visible_maddrs)
            helpers.start()
        if flags.stop:
            return 0
        learner, tasks = _build_learner(cfg, flags)
        print(f"Using Model: {cfg.model}", flush=True)
        clock = SystemClock()
        exchange: RolloutExchange
        coordinator: Coordinator
        if cfg.compat == GENRL_03:
            print("Sharing rounds with genrl 0.3 nodes (unsigned records under bare round keys)", flush=True)
            exchange = GenrlExchange(dht, lambda: dht.peer_id, tasks, ttl=cfg.rollout_ttl,
                                     max_bytes=cfg.max_record_bytes, expected_peers=dht.visible_peers,
                                     seed=cfg.seed)
        else:
            exchange = DhtExchange(dht, lambda: dht.peer_id, namespace=cfg.namespace, ttl=cfg.rollout_ttl,
                                   max_bytes=cfg.max_record_bytes, expected_peers=dht.visible_peers,
                                   seed=cfg.seed)
        if chain is not None:
            # With a chain, its round is also genrl's round key (rl-swarm sets genrl's
            # counter from it), so the compat lane needs no clock of its own.
            chain.publish_bootnodes(dht.visible_maddrs())
            coordinator = chain.start()
            print(f"Connected to the coordinator contract {chain.client.address} "
                  f"(chain {cfg.chain_id}) as {chain.address}", flush=True)
        elif cfg.compat == GENRL_03:
            coordinator = GenrlRoundClock(dht, lambda: dht.peer_id)
        else:
            coordinator = DhtCoordinator(dht, ident.peer_id, namespace=cfg.namespace,
                                         round_seconds=cfg.round_seconds, stages=cfg.stages, wall=clock.wall)
        settings = LoopSettings(
            peer_id=ident.peer_id, animal=ident.animal, heartbeat_path=cfg.heartbeat_path,
            prompts_per_round=cfg.prompts_per_round, max_external=cfg.max_external,
            gather_timeout=cfg.gather_timeout, checkpoint_every=cfg.checkpoint_every,
            max_rounds=cfg.max_rounds, round_seconds=cfg.round_seconds,
            reconnect_after_no_peers=cfg.reconnect_after_no_peers if peers else 0.0,
        )
        node = Node(settings, learner=learner, tasks=tasks, exchange=exchange, coordinator=coordinator,
                    link=dht, flags=flags, clock=clock, sleep=time.sleep, out=sys.stdout,
                    on_round=helpers.check if helpers else (lambda: None))
        return node.run()
    finally:
        if chain is not None:
            chain.stop()
        if helpers is not None:
            helpers.stop()
        dht.shutdown()


def _open_chain(cfg: config_mod.NodeConfig, ident: Identity) -> Any:
    """Check the chain settings and link our peer id (before the DHT: bootnodes come from it)."""
    from trainer.coordinator.connect import ChainLink
    from trainer.coordinator.settings import ChainSettings

    return ChainLink.open(ChainSettings(
        rpc_url=cfg.chain_rpc_url, contract=cfg.chain_contract, chain_id=cfg.chain_id,
        key_path=cfg.chain_key_path or cfg.state_dir / "chain.key", queue_dir=cfg.state_dir / "chain-queue", rpc_timeout=cfg.chain_rpc_timeout,
        poll_seconds=cfg.chain_poll_seconds, queue_max=cfg.chain_queue_max,
    ), ident.peer_id)


def _build_learner(cfg: config_mod.NodeConfig, flags: Flags) -> tuple[Any, Any]:
    from trainer.data import TaskSource
    from trainer.train import GRPOLearner, TrainSettings

    device = cfg.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    tasks = TaskSource(cfg.families, gsm8k_path=cfg.gsm8k_path, seed=cfg.seed)
    settings = TrainSettings(
        model=cfg.model, device=device, dtype=cfg.dtype, num_generations=cfg.num_generations,
        max_new_tokens=cfg.max_new_tokens, prompts_per_round=cfg.prompts_per_round,
        learning_rate=cfg.learning_rate, max_grad_norm=cfg.max_grad_norm, beta=cfg.beta,
        seed=cfg.seed, checkpoint_dir=cfg.checkpoint_dir, checkpoint_keep=cfg.checkpoint_keep,
        hf_token=cfg.hf_token, hf_push_repo=cfg.hf_push_repo, hf_push_every=cfg.hf_push_every,
    )
    return GRPOLearner(settings, tasks, stop_requested=lambda: flags.stop), tasks


class LocalSwarm:
    """Helper peers for the local demo: children in OUR process group, restarted if they die."""

    def __init__(self, config_path: Path, overrides: tuple[str, ...], cfg: config_mod.NodeConfig,
                 bootstrap: Callable[[], list[str]]) -> None:
        self.config_path = config_path
        self.overrides = overrides
        self.cfg = cfg
        self.bootstrap = bootstrap
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self.logs: dict[int, IO[bytes]] = {}

    def _argv(self, k: int) -> list[str]:
        state = self.cfg.state_dir / f"peer{k}"
        peers = "[" + ", ".join(f'"{m}"' for m in self.bootstrap()) + "]"
        extra = [
            f'state_dir="{state}"', f'identity_path="{state / "swarm.pem"}"',
            f'checkpoint_dir="{state / "checkpoints"}"', f'heartbeat_path="{state / "trainer.json"}"',
            f"initial_peers={peers}", 'initial_peers_file=""', "local_swarm_peers=0",
            f"seed={self.cfg.seed + k}", f'chain_key_path="{state / "chain.key"}"',
        ]
        argv = [sys.executable, "-m", "trainer", "--config", str(self.config_path)]
        for item in (*[o for o in self.overrides if not o.startswith("local_swarm_peers")], *extra):
            argv += ["--override", item]
        return argv

    def _spawn(self, k: int) -> None:
        state = self.cfg.state_dir / f"peer{k}"
        state.mkdir(parents=True, exist_ok=True)
        old = self.logs.pop(k, None)
        if old is not None:
            old.close()
        log = (state / "trainer.log").open("ab")
        self.logs[k] = log
        # No start_new_session: the helper stays in our process group on purpose.
        self.children[k] = subprocess.Popen(self._argv(k), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        print(f"INFO:trainer.local_swarm:started helper peer {k} pid {self.children[k].pid} "
              f"(log {state / 'trainer.log'})", flush=True)

    def start(self) -> None:
        for k in range(1, self.cfg.local_swarm_peers + 1):
            self._spawn(k)

    def check(self) -> None:
        for k, child in list(self.children.items()):
            rc = child.poll()
            if rc is not None:
                print(f"WARNING:trainer.local_swarm:helper peer {k} exited with {rc}; restarting", flush=True)
                self._spawn(k)

    def stop(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + 20
        for child in self.children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=5)
        for log in self.logs.values():
            with contextlib.suppress(OSError):
                log.close()


if __name__ == "__main__":
    sys.exit(main())
