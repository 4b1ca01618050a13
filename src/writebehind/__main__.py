"""``python -m writebehind``: the command line (see :mod:`writebehind.cli`)."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
