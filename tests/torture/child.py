"""The process that gets killed: appends entries and reports each acknowledgement.

Usage: ``python child.py PATH --seed S [--ack-before-flush] [--durable] [--max-frames N]
[--flush-every N] [--variables A,B] [--attribute] [--say-started]``

It opens PATH with writebehind (mode None: recovers and continues an existing file), then
appends one entry to every variable of :mod:`workload` per frame, flushing every 1 to 10
frames (drawn from the seed). Only after ``flush()`` returned does it write
``ACK {"path": n, ...}`` to stdout, meaning: entries ``0 .. n-1`` of each variable are
acknowledged. (``checkpoints/state`` starts late: see ``workload.LATE``.) The negative
control ``--ack-before-flush`` acknowledges right after appending, before the flush, which
the checker must catch.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import writebehind
from torture.workload import DEFAULT, LATE, entry


def _say(line: str) -> None:
    os.write(1, (line + "\n").encode())  # one write(2) per line, unbuffered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ack-before-flush", action="store_true")
    parser.add_argument(
        "--ack-delay",
        type=float,
        default=0.0,
        help="with --ack-before-flush: seconds between the early acknowledgement and the flush",
    )
    parser.add_argument("--durable", action="store_true")
    parser.add_argument(
        "--checksums", action="store_true", help="create variables with Fletcher32 checksums"
    )
    parser.add_argument("--max-frames", type=int, default=10**9)
    parser.add_argument("--flush-every", type=int, default=0, help="fixed interval (0: random)")
    parser.add_argument("--variables", default="", help="comma-separated subset of VARIABLES")
    parser.add_argument(
        "--attribute", action="store_true", help="add a root attribute in the first flush"
    )
    parser.add_argument(
        "--late", type=int, default=0, help="entry at which checkpoints/state starts (0: LATE)"
    )
    parser.add_argument(
        "--say-started",
        action="store_true",
        help="write STARTED once imported, before the open (which recovers the file)",
    )
    args = parser.parse_args(argv)
    late = {**LATE, "checkpoints/state": args.late} if args.late else LATE
    rng = random.Random(args.seed)
    if args.say_started:  # the kill can then be timed from recovery, not from start-up
        _say("STARTED")

    store = writebehind.open(args.path, checksums=args.checksums)
    chosen = args.variables.split(",") if args.variables else DEFAULT
    nodes = {path: store[path] for path in chosen}
    next_index = {}
    for path, node in nodes.items():
        next_index[path] = len(node) if path in store else 0
    _say("OPEN " + json.dumps(next_index))
    frames = 0
    while frames < args.max_frames:
        every = args.flush_every or rng.randint(1, 10)
        for _ in range(every):
            for path, node in nodes.items():
                if next_index[chosen[0]] < late.get(path, 0):
                    continue
                node.append(entry(path, next_index[path]))
                next_index[path] += 1
            frames += 1
        if args.attribute and frames == every:  # a structural change in the first flush
            store.add_metadata("torture_note", f"added by child {os.getpid()}")
        if args.ack_before_flush:
            _say("ACK " + json.dumps(next_index))
            time.sleep(args.ack_delay)
        store.flush(durable=args.durable)
        if not args.ack_before_flush:
            _say("ACK " + json.dumps(next_index))
    store.close()
    _say("CLOSED " + json.dumps(next_index))
    return 0


if __name__ == "__main__":
    sys.exit(main())
