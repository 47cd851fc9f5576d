"""Shared pytest configuration; fixtures live in tests/fixtures/ by concern."""

import os

from hypothesis import settings

# CI (HYPOTHESIS_PROFILE=ci, set by .ci/run) draws the same examples on every run: a
# red CI is then reproducible, never a roll of the dice. Elsewhere each run draws new
# ones, so property tests keep exploring (that is how a wrong property was found).
settings.register_profile("ci", derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

pytest_plugins = [
    "tests.fixtures.sshd",
    "tests.fixtures.audited_sshd",
    "tests.fixtures.simfleet",
    "tests.fixtures.wedge",
]
