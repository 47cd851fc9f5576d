"""One measured fix to asyncssh's per-packet cost, applied when the SSH transport loads.

asyncssh builds a debug message for every SSH packet it sends or receives (the
packet type's name, ``plural(len, 'byte')``, the full payload) before its logger
checks whether packet logging is on at all: that needs ``set_debug_level(3)``. At
1,000 hosts (``bench/health.py --hosts 1000 --metrics``) the messages nobody reads
were 4% of the console's CPU. The wrapper checks the level first and then calls the
original, so packet logging still works when turned on. If a later asyncssh renames
what is patched, nothing is patched and nothing breaks.
"""

from __future__ import annotations

from typing import Any

from asyncssh.logging import SSHLogger
from asyncssh.packet import SSHPacketLogger

_PATCHED = "_rolldeck_level_checked"


def skip_unlogged_packets() -> bool:
    """Make packet logging free when it is off; returns whether the patch is in place."""
    original = getattr(SSHPacketLogger, "_log_packet", None)
    if original is None or not hasattr(SSHLogger, "_debug_level"):
        return False
    if getattr(original, _PATCHED, False):
        return True

    def _log_packet(self: Any, *args: Any, **kwargs: Any) -> None:
        if SSHLogger._debug_level >= 3:
            original(self, *args, **kwargs)

    setattr(_log_packet, _PATCHED, True)
    SSHPacketLogger._log_packet = _log_packet  # type: ignore[method-assign]
    return True
