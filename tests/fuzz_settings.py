"""Hypothesis settings shared by tests/codecs/test_fuzz.py and tests/store/test_stateful.py
(their strategies: fuzz_values.py).

Two profiles: ``writebehind-ci`` (the default: a few dozen examples each, so that the fuzz
and stateful tests together stay within about 30 s on a shared 2-core machine) and
``writebehind-long`` for a run at home (``WRITEBEHIND_FUZZ=long pytest tests/codecs/test_fuzz.py
tests/store/test_stateful.py``: fifty times the examples, longer state machine runs). No
deadline: the machine is shared, and a slow example is not a failure.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {
    "deadline": None,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
    "print_blob": True,
}
settings.register_profile("writebehind-ci", max_examples=40, stateful_step_count=25, **_COMMON)
settings.register_profile("writebehind-long", max_examples=2000, stateful_step_count=80, **_COMMON)

PROFILE = f"writebehind-{os.environ.get('WRITEBEHIND_FUZZ', 'ci')}"
FUZZ = settings(settings.get_profile(PROFILE))
#: pytest-timeout for a fuzz test module: the long profile runs for many minutes.
TIMEOUT_SECONDS = 180 if PROFILE == "writebehind-ci" else 4 * 3600


def scaled(fraction: float) -> settings:
    """The profile with ``fraction`` of its examples (for the slower properties)."""
    base = settings.get_profile(PROFILE)
    return settings(base, max_examples=max(5, int(base.max_examples * fraction)))
