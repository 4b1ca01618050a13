"""The parent side of the kill-torture: start the child, kill it, check in a fresh process.

Two ways to kill:

- :func:`random_kills`: SIGKILL at a random moment (fixed seed), some during the child's own
  start-up (so recovery itself gets killed), most while it appends and flushes. With
  ``chain=True`` every trial continues the file the previous one left, so each child starts
  by recovering its predecessor's crash.
- :func:`pwrite_kills`: strace's fault injection kills the child at the K-th ``pwrite64``
  for each K of one flush in turn (``strace -f -e inject=pwrite64:signal=SIGKILL:when=K``).

After each kill, ``check.py`` runs in a fresh process and reports what it recovered.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CHILD = HERE / "child.py"
CHECK = HERE / "check.py"
CHECK_TIMEOUT = 120.0


@dataclass
class Trial:
    """One kill and what the fresh process found afterwards."""

    name: str
    acked: dict[str, int]  # entries acknowledged per variable (by this and earlier children)
    killed: bool  # False: the child finished (closed) before the kill
    check: dict[str, Any] = field(default_factory=dict)
    child_error: str = ""  # the child died of an error of its own before the kill

    @property
    def acknowledged(self) -> int:
        return sum(self.acked.values())

    @property
    def lost(self) -> int:
        return int(self.check.get("lost", 0))

    @property
    def torn(self) -> int:
        return int(self.check.get("torn", 0))

    @property
    def unreadable_before(self) -> bool:
        return bool(self.check.get("plain_before")) and not self.never_created

    @property
    def never_created(self) -> bool:
        """Killed before the file got its name (it is created under another and renamed)."""
        return self.check.get("plain_before") == "missing" and "FileNotFoundError" in str(
            self.check.get("open_error", "")
        )

    @property
    def unreadable_after(self) -> bool:
        if self.never_created:
            return False
        return bool(self.check.get("plain_after")) or "open_error" in self.check

    @property
    def read_only_wrote(self) -> bool:
        """A read-only open changed the file or its side files (it must never)."""
        return bool(self.check.get("read_only_wrote"))

    @property
    def moved_aside(self) -> bool:
        return "moved aside" in str(self.check.get("open_error", ""))

    @property
    def superblock_repaired(self) -> bool:
        recovery = self.check.get("recovery") or {}
        return bool(recovery.get("superblock_repaired"))


def strace_available() -> bool:
    return shutil.which("strace") is not None


def _child_command(path: Path, seed: int, *, ack_before_flush: bool, extra: list[str]) -> list[str]:
    command = [sys.executable, str(CHILD), str(path), "--seed", str(seed), *extra]
    if ack_before_flush:
        command.append("--ack-before-flush")
    return command


def _read_acks(output: str, acked: dict[str, int]) -> tuple[dict[str, int], bool]:
    """``acked`` raised by the child's acknowledgements, and whether it closed the store."""
    acked = dict(acked)
    closed = False
    for line in output.splitlines():
        word, _, value = line.partition(" ")
        if word in ("ACK", "CLOSED"):
            for path, count in json.loads(value).items():
                acked[path] = max(acked.get(path, 0), int(count))
            closed = closed or word == "CLOSED"
    return acked, closed


def _child_error(returncode: int, closed: bool, stderr: Any) -> str:
    """The end of the child's stderr if it died of its own error rather than the kill."""
    if closed or returncode in (-signal.SIGKILL, 128 + signal.SIGKILL):
        return ""
    text = stderr if isinstance(stderr, str) else stderr.read().decode(errors="replace")
    return f"exit status {returncode}: {text.strip()[-300:]}"


def check(path: Path, acked: dict[str, int]) -> dict[str, Any]:
    """Run ``check.py`` in a fresh process (with a timeout: a damaged file may hang)."""
    lost_all = {"lost": sum(acked.values())}
    try:
        done = subprocess.run(
            [sys.executable, str(CHECK), str(path), json.dumps(acked)],
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return {**lost_all, "open_error": "check timed out"}
    if done.returncode != 0 or not done.stdout.strip():
        return {**lost_all, "open_error": f"check exited {done.returncode}: {done.stderr[-800:]}"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _parallel(jobs: list[Any], workers: int) -> list[Any]:
    """Run the zero-argument callables ``jobs`` on ``workers`` threads; results in order."""
    if workers <= 1:
        return [job() for job in jobs]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda job: job(), jobs))


def random_kills(
    workdir: Path,
    trials: int,
    seed: int,
    *,
    chains: int = 1,
    max_delay: float = 0.6,
    startup_fraction: float = 0.2,
    ack_before_flush: bool = False,
    durable: bool = False,
    variables: list[str] | None = None,
    kill_on_ack: bool = False,
    checksums: bool = False,
) -> list[Trial]:
    """SIGKILL children at random moments (fixed seed).

    The trials are split among ``chains`` files run side by side; within a chain every
    child continues the file the previous one left, so it starts by recovering that crash.
    ``kill_on_ack`` kills each child as soon as its first acknowledgement arrives instead.
    """
    rng = random.Random(seed)
    plans = [[rng.random() for _ in range(3)] for _ in range(trials)]
    extra = ["--durable"] if durable else []
    if checksums:  # a kill inside a chunk's rewrite then tears its checksum: resealed
        extra.append("--checksums")
    if ack_before_flush and kill_on_ack:
        # The negative control's window between the early acknowledgement and the flush:
        # without it, the child's flush (quick when the writer has already written the
        # entries, 50 ms after they were appended) can finish before the kill lands, and
        # the control then loses nothing and proves nothing.
        extra += ["--ack-delay", "0.5"]
    if variables:
        extra += ["--variables", ",".join(variables)]

    def chain(number: int) -> list[Trial]:
        path = workdir / f"random-{number}.nc"
        acked: dict[str, int] = {}
        results = []
        for index in range(number, trials, chains):
            child_seed, when, delay = plans[index]
            command = _child_command(
                path, int(child_seed * 2**31), ack_before_flush=ack_before_flush, extra=extra
            )
            child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            assert child.stdout is not None
            seen = b""  # lines read before the kill
            if kill_on_ack:
                while line := child.stdout.readline():
                    seen += line
                    if line.startswith(b"ACK"):
                        break
            elif when < startup_fraction:
                time.sleep(delay * 0.5)  # python start-up, imports, recovery, open
            else:
                child.stdout.readline()  # "OPEN ..." once the store is open
                time.sleep(delay * max_delay)
            child.send_signal(signal.SIGKILL)
            output = (seen + child.stdout.read()).decode()
            child.wait()
            acked, closed = _read_acks(output, acked)
            trial = Trial(f"random#{index}", acked, killed=not closed)
            trial.child_error = _child_error(child.returncode, closed, child.stderr)
            trial.check = check(path, acked)
            if trial.moved_aside:
                acked = {}  # the next child starts a new file (nothing acknowledged was lost)
            results.append(trial)
        return results

    chained = _parallel([lambda n=n: chain(n) for n in range(chains)], chains)
    return sorted((t for c in chained for t in c), key=lambda t: int(t.name.split("#")[1]))


_PWRITE = re.compile(r"^\d+\s+pwrite64\(")
_ACK = re.compile(r'^\d+\s+write\(1, "ACK ')


def flush_pwrites(
    workdir: Path,
    frames: int,
    flush_every: int,
    variables: list[str] | None = None,
    late: int = 0,
) -> list[tuple[int, int]]:
    """Trace one clean run; for each flush, the 1-based numbers of the pwrite64 calls
    made since the previous acknowledgement, up to its own (``[(first, last), ...]``); a
    last range holds the close's, if it made any."""
    path = workdir / "trace.nc"
    log = workdir / "trace.log"
    command = [
        "strace",
        "-f",
        "-qq",
        "-o",
        str(log),
        "-e",
        "trace=pwrite64,write",
        *_child_command(
            path, 0, ack_before_flush=False, extra=_fixed(frames, flush_every, variables, late)
        ),
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, timeout=120)
    ranges: list[tuple[int, int]] = []
    count = 0
    previous = 0
    for line in log.read_text().splitlines():
        if _PWRITE.match(line):
            count += 1
        elif _ACK.match(line):
            ranges.append((previous + 1, count))
            previous = count
    if count > previous:
        ranges.append((previous + 1, count))
    path.unlink()
    log.unlink()
    return ranges


def _fixed(
    frames: int, flush_every: int, variables: list[str] | None = None, late: int = 0
) -> list[str]:
    extra = ["--max-frames", str(frames), "--flush-every", str(flush_every)]
    if variables:
        extra += ["--variables", ",".join(variables)]
    if late:
        extra += ["--late", str(late)]
    return extra


def pwrite_kills(
    workdir: Path,
    pwrite_numbers: range | list[int],
    *,
    frames: int,
    flush_every: int,
    variables: list[str] | None = None,
    ack_before_flush: bool = False,
    workers: int = 1,
    late: int = 0,
) -> list[Trial]:
    """Kill a fresh child at each given pwrite64 (strace fault injection) and check
    (``late``: the entry at which ``checkpoints/state`` starts, 0 for ``workload.LATE``)."""

    def trial(number: int) -> Trial:
        path = workdir / f"pwrite-{number}.nc"
        command = [
            "strace",
            "-f",
            "-qq",
            "-o",
            os.devnull,
            "-e",
            "trace=pwrite64",
            "-e",
            f"inject=pwrite64:signal=SIGKILL:when={number}",
            *_child_command(
                path,
                0,
                ack_before_flush=ack_before_flush,
                extra=_fixed(frames, flush_every, variables, late),
            ),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        acked, closed = _read_acks(done.stdout, {})
        result = Trial(f"pwrite#{number}", acked, killed=not closed)
        result.child_error = _child_error(done.returncode, closed, done.stderr)
        result.check = check(path, acked)
        return result

    return _parallel([lambda n=n: trial(n) for n in pwrite_numbers], workers)


def summarize(trials: list[Trial]) -> dict[str, Any]:
    """The numbers the issue asks for."""
    return {
        "trials": len(trials),
        "killed": sum(t.killed for t in trials),
        "acknowledged_entries_checked": sum(t.acknowledged for t in trials),
        "lost_entries": sum(t.lost for t in trials),
        "torn_entries": sum(t.torn for t in trials),
        "unreadable_before_recovery": sum(t.unreadable_before for t in trials),
        "unreadable_after_recovery": sum(t.unreadable_after for t in trials),
        "superblock_repairs": sum(t.superblock_repaired for t in trials),
        "child_errors": sum(bool(t.child_error) for t in trials),
        "moved_aside": sum(t.moved_aside for t in trials),
        "read_only_opens_that_wrote": sum(t.read_only_wrote for t in trials),
        "read_only_opens_refused": sum(bool(t.check.get("read_only_refused")) for t in trials),
        "killed_before_the_file_existed": sum(t.never_created for t in trials),
    }


def failures(trials: list[Trial]) -> list[str]:
    """One line per trial that lost or tore an entry, or left a file unreadable although it
    held acknowledged entries."""
    return [
        f"{t.name}: acked={t.acked} {json.dumps(t.check)} {t.child_error}"
        for t in trials
        if t.lost
        or t.torn
        or (t.unreadable_after and t.acknowledged)
        or t.child_error
        or t.read_only_wrote
    ]
