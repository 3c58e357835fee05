"""Kernel OOM records: parsed in every format the kernel log is read in."""

from __future__ import annotations

import pytest

from swarmd.kernel_log import OomRecord, parse_oom, victim_in_tree


@pytest.mark.parametrize(
    ("line", "pid", "name"),
    [
        ("6,1234,597411196,-;Out of memory: Killed process 4242 (python) total-vm:8123456kB, anon-rss:7000000kB", 4242, "python"),
        ("[597411.197001] host kernel: Out of memory: Killed process 4242 (p2pd) total-vm:1kB", 4242, "p2pd"),
        ("3,900,100,-;Memory cgroup out of memory: Killed process 77 (python3) total-vm:1kB, anon-rss:1kB", 77, "python3"),
        ("Out of memory: Kill process 31 (python) score 912 or sacrifice child", 31, "python"),
        ("6,1,2,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/x,task_memcg=/x,task=python3,pid=555,uid=0", 555, "python3"),
        ("6,1,2,-;oom_reaper: reaped process 555 (python3), now anon-rss:0kB", 555, "python3"),
    ],
)
def test_victim_records_give_pid_and_name(line: str, pid: int, name: str) -> None:
    rec = parse_oom(line)
    assert rec is not None
    assert (rec.pid, rec.name, rec.victim) == (pid, name, True)
    assert not rec.line.startswith(("6,", "3,"))  # the kmsg header is not evidence


def test_invoker_is_not_a_victim() -> None:
    rec = parse_oom("[597411.196310] p2pd invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE), order=0")
    assert rec == OomRecord(None, "p2pd", rec.line if rec else "", False)


@pytest.mark.parametrize("line", ["6,1,2,-;eth0: link up", "Killed", "CUDA out of memory. Tried to allocate 2 GiB", ""])
def test_other_lines_are_not_records(line: str) -> None:
    assert parse_oom(line) is None


def test_victim_must_be_in_the_tree_with_its_name() -> None:
    rec = OomRecord(4242, "python", "Out of memory: Killed process 4242 (python)", True)
    assert victim_in_tree(rec, {4242: "python", 4243: "p2pd"})
    assert not victim_in_tree(rec, {4243: "p2pd"})
    assert not victim_in_tree(rec, {4242: "bash"}), "a reused pid is not ours"
    long_name = OomRecord(9, "hivemind-dht-pr", "x", True)  # the kernel keeps 15 characters
    assert victim_in_tree(long_name, {9: "hivemind-dht-process"})
