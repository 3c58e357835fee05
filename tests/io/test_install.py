"""scripts/install.sh in a throwaway root, and the unit it installs under
`systemd-analyze verify`."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from swarmd import config

pytestmark = pytest.mark.io

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "install.sh"
UNIT = REPO / "systemd" / "swarmd.service"
HOST_UNITS = Path("/usr/lib/systemd/system")


def install(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--root", str(root), "--no-venv", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def snapshot_tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()
    }


def unit_service_section(text: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser["Service"]


def seconds(value: str) -> float:
    return float(value.removesuffix("s"))


def test_install_creates_unit_config_and_service_dirs(tmp_path: Path) -> None:
    """A staged install writes the unit, the config and the state/log directories,
    and tells the operator what to run next."""
    out = install(tmp_path).stdout
    assert (
        tmp_path / "etc/systemd/system/swarmd.service"
    ).read_text() == UNIT.read_text()
    assert (tmp_path / "etc/swarmd/monitor.toml").is_file()
    assert (tmp_path / "var/lib/swarmd").is_dir()
    assert (tmp_path / "var/log/swarmd").is_dir()
    assert (tmp_path / "opt/swarmd/README.md").is_file()
    assert "not creating user swarmd" in out
    assert "not calling systemctl" in out
    for hint in (
        "journalctl -u swarmd -f",
        "tail -f /var/log/swarmd/monitor.log",
        "systemctl reload swarmd",
    ):
        assert hint in out


def test_installed_config_points_at_service_dirs(tmp_path: Path) -> None:
    """The installed monitor.toml parses and keeps state in /var/lib/swarmd and logs
    in /var/log/swarmd, with no path left relative to /etc/swarmd."""
    install(tmp_path)
    cfg = config.load(tmp_path / "etc/swarmd/monitor.toml")
    assert cfg.state_dir == Path("/var/lib/swarmd")
    assert cfg.logs.dir == Path("/var/log/swarmd")
    assert cfg.logs.monitor_log.parent == Path("/var/log/swarmd")
    assert cfg.trainer.cwd == Path("/var/lib/swarmd")
    assert cfg.health.heartbeat_file == Path("/var/lib/swarmd/trainer.json")
    assert cfg.control_socket == Path("/var/lib/swarmd/swarmd.sock")


def test_second_run_changes_nothing(tmp_path: Path) -> None:
    """Running the installer again leaves every file as it was and writes no .new."""
    install(tmp_path)
    before = snapshot_tree(tmp_path)
    out = install(tmp_path).stdout
    assert snapshot_tree(tmp_path) == before
    assert "monitor.toml is up to date" in out
    assert "swarmd.service is up to date" in out


def test_edited_config_is_kept_and_new_default_beside_it(tmp_path: Path) -> None:
    """An operator's edited monitor.toml survives a re-install; the new default is
    written as monitor.toml.new and the output says so."""
    install(tmp_path)
    conf = tmp_path / "etc/swarmd/monitor.toml"
    pristine = conf.read_text()
    edited = pristine + "\n# operator: tuned for this node\n"
    conf.write_text(edited)
    out = install(tmp_path).stdout
    assert conf.read_text() == edited
    assert (tmp_path / "etc/swarmd/monitor.toml.new").read_text() == pristine
    assert "monitor.toml.new" in out


def test_uninstall_removes_unit_and_venv_keeps_identity_and_logs(
    tmp_path: Path,
) -> None:
    """--uninstall removes the unit and /opt/swarmd but keeps the identity, checkpoints,
    logs and config, and says it kept them."""
    install(tmp_path)
    pem = tmp_path / "var/lib/swarmd/swarm.pem"
    pem.write_text("not a real key")
    ckpt = tmp_path / "var/lib/swarmd/checkpoints/round-41.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"\0" * 16)
    log = tmp_path / "var/log/swarmd/monitor.log"
    log.write_text("{}\n")
    out = install(tmp_path, "--uninstall").stdout
    assert not (tmp_path / "etc/systemd/system/swarmd.service").exists()
    assert not (tmp_path / "opt/swarmd").exists()
    assert pem.read_text() == "not a real key"
    assert ckpt.is_file()
    assert log.is_file()
    assert (tmp_path / "etc/swarmd/monitor.toml").is_file()
    assert "kept /var/lib/swarmd" in out
    install(tmp_path, "--uninstall")  # a second uninstall is harmless


def test_custom_prefix_moves_execstart(tmp_path: Path) -> None:
    """--prefix changes where the unit runs swarmd from and the config's venv python."""
    install(tmp_path, "--prefix", "/srv/swarmd")
    unit = (tmp_path / "etc/systemd/system/swarmd.service").read_text()
    assert unit_service_section(unit)["ExecStart"].startswith(
        "/srv/swarmd/.venv/bin/swarmd "
    )
    assert (
        "/srv/swarmd/.venv/bin/python"
        in (tmp_path / "etc/swarmd/monitor.toml").read_text()
    )


def test_unknown_option_is_an_error(tmp_path: Path) -> None:
    """A mistyped option stops the installer with status 2 before it touches anything."""
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--root", str(tmp_path), "--no-venvv"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "unknown option: --no-venvv" in proc.stderr
    assert not (tmp_path / "etc").exists()


def test_unit_declares_notify_watchdog_and_mixed_kill() -> None:
    """The unit is Type=notify with a watchdog, only the main process may notify, and
    the stop timeout leaves room for the slowest shipped trainer stop_timeout."""
    svc = unit_service_section(UNIT.read_text())
    assert svc["Type"] == "notify"
    assert svc["NotifyAccess"] == "main"
    assert seconds(svc["WatchdogSec"]) >= 30
    assert svc["KillMode"] == "mixed"
    assert "PrivateDevices" not in svc  # CUDA needs /dev/nvidia*
    stop_timeouts = [
        config.load(p).trainer.stop_timeout
        for p in (REPO / "monitor.toml", *sorted((REPO / "examples").glob("*.toml")))
    ]
    assert seconds(svc["TimeoutStopSec"]) >= max(stop_timeouts) + 20


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the installed unit without a warning."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None or not (HOST_UNITS / "sysinit.target").exists():
        pytest.skip("systemd-analyze or the host's systemd units are not installed")
    root = tmp_path / "root"
    install(root)
    # verify resolves the unit's dependencies and executables inside --root: give it
    # the host's standard units, /bin/kill and a stand-in for the venv's swarmd.
    shutil.copytree(HOST_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    kill = shutil.which("kill", path="/bin:/usr/bin")
    assert kill is not None
    (root / "bin").mkdir()
    shutil.copy(kill, root / "bin/kill")
    exe = root / "opt/swarmd/.venv/bin/swarmd"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    proc = subprocess.run(
        [analyze, "verify", f"--root={root}", "/etc/systemd/system/swarmd.service"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr


# -- several nodes per host: swarmd@NAME ------------------------------------------------

TEMPLATE = REPO / "systemd" / "swarmd@.service"
# The keys an instance changes; every other [Service]/[Unit] setting must match the
# plain unit, so hardening added to one is never missing from the other.
_PER_INSTANCE = {"Description", "ExecStart", "StateDirectory", "LogsDirectory", "WorkingDirectory",
                 "Environment", "ReadWritePaths"}


def unit_settings(text: str) -> dict[str, list[str]]:
    """Every `Key=value` of a unit, values in order (keys may repeat)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_instances_get_their_own_config_state_logs_socket_and_port(tmp_path: Path) -> None:
    """--instance gpu0 / gpu1 beside a plain install: three configs that parse, and
    no two share a state dir, log dir, control socket, heartbeat or web port."""
    out0 = install(tmp_path, "--instance", "gpu0").stdout
    install(tmp_path, "--instance", "gpu1")
    install(tmp_path)
    cfgs = [config.load(tmp_path / f"etc/swarmd/{n}.toml") for n in ("gpu0", "gpu1", "monitor")]
    for facet in (
        lambda c: c.state_dir, lambda c: c.logs.dir, lambda c: c.control_socket,
        lambda c: c.health.heartbeat_file, lambda c: c.web.port, lambda c: c.trainer.cwd,
    ):
        values = [facet(c) for c in cfgs]
        assert len(set(values)) == 3, values
    assert cfgs[0].state_dir == Path("/var/lib/swarmd/gpu0")
    assert cfgs[0].logs.dir == Path("/var/log/swarmd/gpu0")
    assert [c.web.port for c in cfgs] == [9465, 9466, 9464]
    assert (tmp_path / "etc/systemd/system/swarmd@.service").read_text() == TEMPLATE.read_text()
    assert (tmp_path / "var/lib/swarmd/gpu0").is_dir()
    assert (tmp_path / "var/log/swarmd/gpu1").is_dir()
    for hint in ("systemctl start swarmd@gpu0", "journalctl -u swarmd@gpu0 -f",
                 "tail -f /var/log/swarmd/gpu0/monitor.log", "http://127.0.0.1:9465/"):
        assert hint in out0


def test_instance_reinstall_keeps_its_port_and_changes_nothing(tmp_path: Path) -> None:
    """Re-running --instance keeps the port it chose; --web-port sets one explicitly."""
    install(tmp_path, "--instance", "a", "--web-port", "9500")
    install(tmp_path, "--instance", "b")
    before = snapshot_tree(tmp_path)
    out = install(tmp_path, "--instance", "a").stdout
    assert snapshot_tree(tmp_path) == before
    assert "a.toml is up to date" in out
    assert config.load(tmp_path / "etc/swarmd/a.toml").web.port == 9500


@pytest.mark.parametrize("name", ["../etc", "gpu 0", "", "monitor", "-x"])
def test_bad_instance_name_is_refused(tmp_path: Path, name: str) -> None:
    """A name that could escape its directory or clash with the plain install stops
    the installer with status 2 before it touches anything."""
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--root", str(tmp_path), "--no-venv", "--instance", name],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert not (tmp_path / "etc").exists()


def test_uninstalling_an_instance_leaves_the_others(tmp_path: Path) -> None:
    """--uninstall --instance gpu0 keeps the template, the venv dir and gpu1's files."""
    install(tmp_path, "--instance", "gpu0")
    install(tmp_path, "--instance", "gpu1")
    out = install(tmp_path, "--uninstall", "--instance", "gpu0").stdout
    assert "disabled swarmd@gpu0.service" in out
    assert (tmp_path / "etc/systemd/system/swarmd@.service").is_file()
    assert (tmp_path / "etc/swarmd/gpu0.toml").is_file()
    assert (tmp_path / "etc/swarmd/gpu1.toml").is_file()
    install(tmp_path, "--uninstall")
    assert not (tmp_path / "etc/systemd/system/swarmd@.service").exists()


def test_template_unit_differs_from_the_plain_unit_only_in_instance_paths() -> None:
    """Same hardening, notify, watchdog and kill settings; %i in every path."""
    plain, tmpl = unit_settings(UNIT.read_text()), unit_settings(TEMPLATE.read_text())
    shared = set(plain) - _PER_INSTANCE
    assert {k: tmpl.get(k) for k in shared} == {k: plain[k] for k in shared}
    assert set(tmpl) == set(plain)
    assert tmpl["ExecStart"] == ["/opt/swarmd/.venv/bin/swarmd run --config /etc/swarmd/%i.toml"]
    for key in ("StateDirectory", "LogsDirectory", "WorkingDirectory", "ReadWritePaths"):
        # the identity lock dir is host-wide on purpose: one swarm.pem, one node, whatever the instance
        values = [v for v in tmpl[key] if v != "-/run/lock"]
        assert values, key
        assert all("%i" in v for v in values), (key, tmpl[key])
    assert "-/run/lock" in tmpl["ReadWritePaths"]


def test_template_unit_instance_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify swarmd@gpu0.service` accepts the installed template."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None or not (HOST_UNITS / "sysinit.target").exists():
        pytest.skip("systemd-analyze or the host's systemd units are not installed")
    root = tmp_path / "root"
    install(root, "--instance", "gpu0")
    shutil.copytree(HOST_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    kill = shutil.which("kill", path="/bin:/usr/bin")
    assert kill is not None
    (root / "bin").mkdir()
    shutil.copy(kill, root / "bin/kill")
    exe = root / "opt/swarmd/.venv/bin/swarmd"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    proc = subprocess.run(
        [analyze, "verify", f"--root={root}", "/etc/systemd/system/swarmd@gpu0.service"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
