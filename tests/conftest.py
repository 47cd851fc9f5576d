"""Shared pytest configuration; fixtures live in tests/fixtures/ by concern."""

pytest_plugins = [
    "tests.fixtures.sshd",
    "tests.fixtures.audited_sshd",
    "tests.fixtures.simfleet",
    "tests.fixtures.wedge",
]
