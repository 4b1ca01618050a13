"""The ``writebehind`` command line: ``demo``, ``inspect``, ``read``, ``recover`` and ``export``.

Exit status: 0 on success, 1 when the file or path cannot be used (a missing file, a file
that is not NetCDF, a path that holds nothing), 2 for a command line argparse rejects and
for no command at all (the help, listing the commands, goes to stderr then). Errors are one
line on stderr, never a traceback; an unexpected one (a bug) shows its traceback only under
``python -X dev``.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

import numpy as np
import pint

from . import __version__
from ._engine import EngineStats
from ._errors import WriteBehindError
from ._export import OPTIONAL, SOURCES, ExportError, export_amber, plan_export
from ._inspect import (
    FileSummary,
    GroupSummary,
    UnboundSummary,
    VariableSummary,
    inspect_file,
    render_tree,
)
from ._paths import is_url
from ._targets import backend_class_for, backend_for, is_zarr_target

__all__ = ["main"]

_USER_ERRORS = (OSError, ValueError, KeyError, TypeError, AttributeError, WriteBehindError)
_NEGATIVE_INDEX = re.compile(r"-[\d:][\d:-]*")  # -1, -3:, -5:-2, -6::2


class CommandError(Exception):
    """A user's mistake: printed as one line, exit status 1."""


def _quiet_icechunk(argv: Sequence[str]) -> None:
    """Keep Icechunk's log (its warning about local storage and concurrent committers, at
    every open) out of the output of a command that names an Icechunk repository, unless
    ICECHUNK_LOG asks for it: it prints to stdout, where ``read`` writes its data."""
    if "ICECHUNK_LOG" in os.environ or not any(arg.startswith("icechunk") for arg in argv):
        return
    try:
        import icechunk
    except ImportError:
        return
    icechunk.set_logs_filter("error")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(_join_negative_index(sys.argv[1:] if argv is None else argv))
    if getattr(args, "run", None) is None:  # no command: a usage error that lists them
        parser.print_help(sys.stderr)
        return 2
    _quiet_icechunk(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.run(args))
    except CommandError as exc:
        print(f"writebehind: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `writebehind inspect f.nc | head`: not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("writebehind: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: one line still, and the traceback when asked for
        if sys.flags.dev_mode:
            raise
        print(
            f"writebehind: error: unexpected {type(exc).__name__}: {exc} (a bug in writebehind: "
            "please report it; python -X dev -m writebehind ... shows the traceback)",
            file=sys.stderr,
        )
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="writebehind",
        description="Write-behind NetCDF storage for simulation output: run the demo, "
        "look inside a file, read a variable, recover a file a crash left.",
    )
    parser.add_argument("--version", action="version", version=f"writebehind {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    demo = _command(
        commands, _demo, file_help="output file (default demo.nc)", nargs="?", default="demo.nc"
    )
    demo.add_argument("--steps", type=_positive, default=4000, help="steps (default 4000)")
    demo.add_argument("--atoms", type=_positive, default=64, help="atoms (default 64)")
    demo.add_argument(
        "--checkpoint-every",
        type=_positive,
        default=500,
        metavar="K",
        help="steps between checkpoints (default 500)",
    )
    demo.add_argument("--seed", type=int, default=2024, help="random seed (default 2024)")
    demo.add_argument(
        "--overwrite",
        action="store_true",
        help="replace FILE even if it was not written by an earlier demo",
    )

    inspect = _command(commands, _inspect, file_help="a NetCDF file")
    inspect.add_argument("--json", action="store_true", help="print the tree as JSON")
    inspect.add_argument(
        "--verify",
        action="store_true",
        help="also read every entry once and report damaged ones (exit status 1 if any)",
    )

    read = _command(commands, _read, file_help="a NetCDF file")
    read.add_argument("path", help="the variable's path, such as trajectory/positions")
    read.add_argument(
        "--index",
        type=_index,
        metavar="I",
        help="an entry (negative counts from the end) or a slice START:STOP[:STEP]",
    )
    read.add_argument("--full", action="store_true", help="print arrays without eliding")

    recover = _command(commands, _recover, file_help="a NetCDF-4 file")
    recover.add_argument("--json", action="store_true", help="print the report as JSON")

    export = _command(commands, _export, file_help="a NetCDF file holding a trajectory")
    export.add_argument("--amber", required=True, metavar="OUT", help="the trajectory to write")
    export.add_argument("--group", default="", help="the group holding the variables (root)")
    for role, (default, target, _, _) in SOURCES.items():
        export.add_argument(
            f"--{role}",
            metavar="VAR",
            help=f"the variable of the {role} (default {default}; stored as {target})",
        )
    export.add_argument(
        "--without",
        action="append",
        choices=OPTIONAL,
        default=[],
        help="leave this out even if FILE has it (repeatable)",
    )
    export.add_argument(
        "--assume-openmm-units",
        action="store_true",
        help="take variables stored without units as in OpenMM's (nanometer, picosecond, "
        "kilojoule/mole/nanometer)",
    )
    export.add_argument("--block-frames", type=_positive, metavar="N", help="frames per block")
    replace = export.add_mutually_exclusive_group()
    replace.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    replace.add_argument(
        "--append",
        action="store_true",
        help="add the frames to the end of OUT, an AMBER trajectory of the same atoms",
    )
    return parser


def _command(
    commands: Any,
    run: Callable[[argparse.Namespace], int],
    *,
    file_help: str,
    **file_options: Any,
) -> argparse.ArgumentParser:
    """The subcommand that ``run`` runs, with its FILE argument (``file_options``: more of
    that argument's settings).

    It is named for ``run`` (``_read``: ``read``); the first line of ``run``'s docstring is
    its line in ``writebehind --help``, the rest is what ``writebehind read --help`` says.
    """
    summary, _, description = (run.__doc__ or "").partition("\n\n")
    command: argparse.ArgumentParser = commands.add_parser(
        run.__name__.removeprefix("_"), help=summary.strip(), description=description
    )
    command.add_argument("file", help=file_help, **file_options)
    command.set_defaults(run=run)
    return command


def _join_negative_index(argv: Sequence[str]) -> list[str]:
    """``argv`` with ``--index -3:`` written ``--index=-3:``.

    argparse takes a word that starts with ``-`` for an option, so it refuses ``-3:`` as the
    value of ``--index`` ("expected one argument"); joined with ``=``, any value is taken.
    """
    args = list(argv)
    out: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--":  # the words after it are not options
            out.extend(args[i:])
            break
        is_index = len(word) >= 3 and "--index".startswith(word)  # argparse allows --ind
        if is_index and i + 1 < len(args) and _NEGATIVE_INDEX.fullmatch(args[i + 1]):
            out.append(f"{word}={args[i + 1]}")
            i += 2
            continue
        out.append(word)
        i += 1
    return out


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _index(text: str) -> int | slice:
    try:
        if ":" not in text:
            return int(text)
        parts = [int(p) if p.strip() else None for p in text.split(":")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an index or START:STOP[:STEP]: {text!r}") from None
    if len(parts) > 3:
        raise argparse.ArgumentTypeError(f"a slice has at most three parts: {text!r}")
    return slice(*parts)


# -- inspect ---------------------------------------------------------------------------
def _summary(file_name: str, verify: bool = False) -> FileSummary:
    if not is_url(file_name) and not os.path.exists(file_name):
        raise CommandError(f"no such file: {file_name!r}")
    try:
        return inspect_file(file_name, verify=verify)
    except FileNotFoundError as exc:  # a URL that holds no Zarr store
        raise CommandError(str(exc)) from None
    except ImportError as exc:  # the zarr extra is not installed
        raise CommandError(str(exc)) from None
    except OSError as exc:
        if isinstance(exc, IsADirectoryError | WriteBehindError):  # such as RecoveryError
            raise CommandError(str(exc)) from None
        reason = _reason(exc.__cause__ if isinstance(exc.__cause__, OSError) else exc)
        if isinstance(exc, PermissionError):
            raise CommandError(f"cannot open {file_name!r}: {reason}") from None
        kind = "a Zarr store" if is_zarr_target(file_name) else "a NetCDF file"
        raise CommandError(f"{file_name!r} is not {kind} ({reason})") from None


def _inspect(args: argparse.Namespace) -> int:
    """show the groups and variables of a NetCDF file

    Show the tree of groups and variables of a NetCDF file: for each variable its kind
    (fixed or appendable), entries, entry shape, dtype, units and metadata. Works on NetCDF
    files written by other programs too.
    """
    summary = _summary(args.file, verify=args.verify)
    if args.json:
        print(json.dumps(summary.to_json(), indent=2, ensure_ascii=False))
    else:
        print(render_tree(summary))
    damaged = [
        node.path
        for node in summary.nodes()
        if isinstance(node, VariableSummary) and (node.problem or "").startswith("damaged")
    ]
    if args.verify and damaged:
        print(f"writebehind: error: damaged: {', '.join(damaged)}", file=sys.stderr)
        return 1
    return 0


# -- read ------------------------------------------------------------------------------
def _read(args: argparse.Namespace) -> int:
    """print a variable, or one entry of it

    Print the value of the variable at PATH (such as trajectory/positions), decoded as
    StorageInterface.read() decodes it.
    """
    from ._store import StorageInterface

    summary = _summary(args.file)  # the same checks and messages as inspect
    paths = {node.path: node for node in summary.nodes()}
    path = args.path.strip("/")
    node = paths.get(path)
    if node is None:
        raise CommandError(_missing(path, args.file, paths))
    if isinstance(node, GroupSummary):
        children = ", ".join(child.name for child in node.children) or "nothing"
        raise CommandError(f"{path!r} is a group, not a variable; it holds: {children}")
    if isinstance(node, UnboundSummary):
        names = ", ".join(node.metadata) or "nothing"
        raise CommandError(f"nothing was written to {path!r}: it holds only metadata ({names})")
    try:
        with StorageInterface(backend_for(args.file, "r")) as store:
            value = store[path].read(args.index)
    except MemoryError:  # the driver refuses a read larger than the machine's memory
        raise CommandError(_too_large(node)) from None
    except _USER_ERRORS as exc:
        raise CommandError(f"cannot read {path!r}: {_reason(exc)}") from None
    options: dict[str, Any] = {"threshold": sys.maxsize} if args.full else {}
    labels = None
    if isinstance(args.index, slice) and node.entries is not None:
        labels = range(*args.index.indices(node.entries))
    with np.printoptions(**options):
        print(format_value(value, labels=labels))
    return 0


def _too_large(node: VariableSummary) -> str:
    message = f"{node.path!r} is too large to read at once"
    if node.entries is None:
        return (
            f"{message} ({_bytes(node.nbytes)}), and a fixed variable is read whole: "
            "read parts of it with netCDF4"
        )
    return (
        f"{message} ({node.entries} entries, {_bytes(node.nbytes)}): "
        "read fewer entries at a time with --index START:STOP"
    )


def _missing(path: str, file_name: str, paths: dict[str, Any]) -> str:
    message = f"nothing at {path!r} in {file_name!r}"
    close = difflib.get_close_matches(path, list(paths), n=3)
    if close:
        return message + "; did you mean " + " or ".join(repr(p) for p in close) + "?"
    variables = [p for p, node in paths.items() if isinstance(node, VariableSummary)]
    if variables:
        shown = ", ".join(variables[:8]) + (", ..." if len(variables) > 8 else "")
        return message + f"; its variables are: {shown}"
    return message + "; it holds no variables"


def format_value(value: Any, prefix: str = "", labels: Sequence[int] | None = None) -> str:
    """``value`` as ``read()`` returned it, for people: arrays as numpy prints them,
    quantities with their units, dicts one key a line, lists of records numbered."""
    if isinstance(value, pint.Quantity):
        magnitude = value.magnitude
        units = f"{value.units:~C}" if str(value.units) else ""
        if isinstance(magnitude, np.ndarray):
            return f"{np.array2string(magnitude, prefix=prefix)} {units}".rstrip()
        return f"{magnitude} {units}".rstrip()
    if isinstance(value, np.ndarray):
        return np.array2string(value, prefix=prefix)
    if isinstance(value, dict):
        if not value:
            return "{}"
        lines = []
        for key, item in value.items():
            head = f"{key}: "
            text = format_value(item, " " * len(head)) if _inline(item) else None
            if text is None:
                body = format_value(item).replace("\n", "\n  ")
                lines.append(f"{key}:\n  {body}")
            else:
                lines.append(head + text)
        return "\n".join(lines)
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        labels = range(len(value)) if labels is None else labels
        blocks = [
            f"[{i}]\n  " + format_value(v).replace("\n", "\n  ")
            for i, v in zip(labels, value, strict=False)
        ]
        return "\n".join(blocks)
    if isinstance(value, str) and not prefix:
        return value
    return repr(value) if prefix or not isinstance(value, list | tuple) else str(value)


def _inline(item: Any) -> bool:
    if isinstance(item, dict):
        return False
    return not (isinstance(item, list) and item and all(isinstance(v, dict) for v in item))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


# -- recover ---------------------------------------------------------------------------
def _recover(args: argparse.Namespace) -> int:
    """recover a file a crashed writer left, and say what was done

    Do what opening FILE with writebehind does to a file a killed or crashed writer left
    (repair the HDF5 superblock, roll back an interrupted change of structure, move an
    unrecoverable file aside), check that netCDF4 reads it, and report. A file that was
    closed cleanly is only checked. See docs/durability.md.
    """
    try:
        backend = backend_class_for(args.file)
    except ImportError as exc:  # a Zarr store without the zarr extra
        raise CommandError(str(exc)) from None
    if backend.no_recovery_needed:  # a backend that never recovers
        print(f"{args.file}: {backend.no_recovery_needed}")
        return 0
    if not os.path.exists(args.file):
        raise CommandError(f"no such file: {args.file!r}")
    try:
        report = backend.recover(args.file, force=True)
    except WriteBehindError as exc:  # RecoveryError: moved aside, in use, damaged superblock
        raise CommandError(str(exc)) from None
    except OSError as exc:  # a directory, a file it may not read
        raise CommandError(f"cannot recover {args.file!r}: {_reason(exc)}") from None
    if report is None:  # the backend found nothing it would recover
        print(f"{args.file}: nothing to recover")
        return 0
    print(json.dumps(report.summary(), indent=2) if args.json else report.describe())
    return 0 if report.readable_after else 1


# -- export ----------------------------------------------------------------------------
def _export(args: argparse.Namespace) -> int:
    """convert a trajectory to an AMBER NetCDF trajectory (mdtraj, MDAnalysis, cpptraj)

    Copy the positions (and velocities, forces, box, time, if present) that FILE holds
    one entry per frame, such as writebehind.openmm.Reporter writes, into an
    AMBER-convention NetCDF trajectory: angstrom, picosecond, float32. Units are converted
    from those stored; frames are copied a block at a time.
    """
    from ._store import StorageInterface

    out = args.amber
    if os.path.exists(out) and not (args.overwrite or args.append):
        raise CommandError(f"{out!r} exists; choose another OUT or pass --overwrite")
    if os.path.abspath(out) == os.path.abspath(args.file):
        raise CommandError("OUT must not be FILE")
    summary = _summary(args.file)
    names = {role: getattr(args, role) for role in SOURCES if getattr(args, role)}
    try:
        plan = plan_export(
            summary, args.group, names, tuple(args.without), args.assume_openmm_units
        )
    except ExportError as exc:
        raise CommandError(f"cannot export {args.file!r}: {exc}") from None
    with StorageInterface(backend_for(args.file, "r")) as store:

        def read(path: str, start: int, stop: int) -> Any:
            return store[path].read(slice(start, stop))

        try:
            export_amber(
                plan,
                read,
                out,
                title=f"exported from {os.path.basename(args.file)}",
                block_frames=args.block_frames,
                program_version=__version__,
                append=args.append,
            )
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot write {out!r}: {_reason(exc)}") from None
    exported = ", ".join(role for role in SOURCES if role in plan.sources)
    done = "appended" if args.append else "written"
    print(f"{out}: {plan.frames} frames of {plan.atoms} atoms {done} ({exported})")
    return 0


# -- demo ------------------------------------------------------------------------------
def _demo(args: argparse.Namespace) -> int:
    """run a small Langevin dynamics simulation that stores its output

    Simulate a cluster of argon atoms with Langevin dynamics (numpy), storing positions,
    velocities, energies (with units) every step and a checkpoint dict every K steps; then
    print the store's statistics and the stored tree.
    """
    from ._demo import DemoParameters, run_demo
    from ._legacy import NetCDFIODriver
    from ._store import StorageInterface

    file_name = args.file
    if os.path.exists(file_name) and not args.overwrite and not _is_demo_file(file_name):
        raise CommandError(
            f"{file_name!r} exists and was not written by the demo; "
            "choose another FILE or pass --overwrite"
        )
    directory = os.path.dirname(os.path.abspath(file_name))
    if not os.path.isdir(directory):  # netCDF4 would say "Permission denied"
        raise CommandError(f"cannot create {file_name!r}: no such directory {directory!r}")
    parameters = DemoParameters(
        n_atoms=args.atoms,
        n_steps=args.steps,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
    )
    try:
        store = StorageInterface(NetCDFIODriver(file_name, "w"))
    except OSError as exc:
        raise CommandError(f"cannot create {file_name!r}: {_reason(exc)}") from None
    print(
        f"writebehind demo: Langevin dynamics of {parameters.n_atoms} atoms, "
        f"{parameters.n_steps} steps, every step stored in {file_name}"
    )
    progress = ProgressBar(parameters.n_steps, sys.stderr)
    try:
        with store:
            timings = run_demo(store, parameters, progress)
            progress.close()
            flush_started = time.perf_counter()
            store.flush()
            flushed = time.perf_counter() - flush_started
            stats = store.stats()
    except (WriteBehindError, OSError) as exc:  # BackgroundWriteError: a full disk, say
        progress.close()
        raise CommandError(f"the demo stopped: {exc}") from None
    per_call = 1e6 * timings.store_seconds / max(1, timings.store_calls)
    print(f"simulated {parameters.n_steps} steps in {timings.loop_seconds:.2f} s")
    print(
        f"  the loop spent {timings.store_seconds:.3f} s in {timings.store_calls} store calls "
        f"({per_call:.1f} µs per call)"
    )
    print(f"  the flush after the last step waited {flushed:.3f} s")
    print()
    print("store.stats() after the flush:")
    print(format_stats(stats))
    print()
    print(render_tree(inspect_file(file_name)))
    print()
    print(f"next: writebehind inspect {file_name}")
    print(f"      writebehind read {file_name} energies/temperature --index -1")
    print(f"      xarray.load_dataset({file_name!r}, group='trajectory')  (with xarray)")
    return 0


def _is_demo_file(file_name: str) -> bool:
    try:
        summary = inspect_file(file_name)
    except OSError:
        return False
    return summary.root.metadata.get("program") == "writebehind demo"


def format_stats(stats: EngineStats) -> str:
    """``store.stats()`` as an aligned two-column table."""
    rows = [
        ("operations enqueued", f"{stats.operations_enqueued}"),
        ("operations applied", f"{stats.operations_applied}"),
        ("pending operations", f"{stats.pending_operations}"),
        ("pending bytes", f"{stats.pending_bytes}"),
        ("batches written", f"{stats.batches_written}"),
        ("bytes written", _bytes(stats.bytes_written)),
        ("write rate (since open)", _bytes(stats.write_rate_bytes_per_second) + "/s"),
        ("backpressure waits", f"{stats.backpressure_waits}"),
        ("longest backpressure wait", f"{stats.longest_backpressure_wait_seconds:.3f} s"),
        ("failed", f"{stats.failed}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"  {name:<{width}}  {value}" for name, value in rows)


def _bytes(n: float) -> str:
    if n < 1000:
        return f"{n:.0f} bytes"
    for unit in ("kB", "MB", "GB", "TB"):
        n /= 1000
        if n < 1000 or unit == "TB":
            break
    return f"{n:.1f} {unit}"


class ProgressBar:
    """A one-line progress bar on a terminal; silent when ``stream`` is not a TTY."""

    def __init__(self, total: int, stream: IO[str], width: int = 30, interval: float = 0.1):
        self.total = total
        self.stream = stream
        self.width = width
        self.interval = interval
        self.enabled = stream.isatty()
        self._started: float | None = None
        self._last_drawn = -interval
        self._drawn = False

    def __call__(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self._started is None:
            self._started = now
        if now - self._last_drawn < self.interval and done < self.total:
            return
        self._last_drawn = now
        filled = self.width * done // self.total
        elapsed = now - self._started
        rate = f"  {done / elapsed:,.0f} steps/s" if elapsed > 0 else ""
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{self.total} steps{rate}"
        self.stream.write("\r" + line.ljust(79))
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
