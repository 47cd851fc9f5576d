"""Two measured fixes to asyncssh's per-packet cost, applied when the SSH transport loads.

* **Packet logging.** asyncssh builds a debug message for every SSH packet it sends or
  receives (the packet type's name, ``plural(len, 'byte')``, the full payload) before
  its logger checks whether packet logging is on at all: that needs
  ``set_debug_level(3)``. At 1,000 hosts (``bench/health.py --hosts 1000 --metrics``)
  the messages nobody reads were 4% of the console's CPU. The wrapper checks the level
  first and then calls the original, so packet logging still works when turned on.
* **The empty ``MSG_IGNORE`` before every packet.** asyncssh sends one ahead of each
  packet once encryption is on, whatever the cipher: the countermeasure of RFC 4251
  9.3.1 against the chosen-plaintext attack on CBC mode's predictable IVs. With an AEAD
  cipher (AES-GCM, ChaCha20-Poly1305, what rolldeck negotiates first) or CTR mode there
  is nothing for it to protect, and OpenSSH does not send one per packet (only its
  keystroke-timing cover traffic). It was 45% of the packets rolldeck sent in the
  shared bench's rollout (1,110 of 2,470 at 50 hosts), each one encrypted and written.
  Without them the client's CPU on exec-heavy work is 4-14% lower
  (``bench/ignore_packets.py``); the wall time on the shared bench does not move
  measurably. Under a CBC cipher (or any other) every ignore packet is still sent.

If a later asyncssh renames what is patched, nothing is patched and nothing breaks.
"""

from __future__ import annotations

from typing import Any

from asyncssh.connection import SSHConnection
from asyncssh.constants import MSG_IGNORE
from asyncssh.logging import SSHLogger
from asyncssh.packet import SSHPacketLogger, String

_PATCHED = "_rolldeck_level_checked"
_IGNORE_PATCHED = "_rolldeck_ignore_only_where_needed"
_EMPTY = (String(b""),)  # the countermeasure's payload: an empty string


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


def needs_ignore_packets(cipher: str | None) -> bool:
    """Whether the empty-ignore countermeasure protects anything under ``cipher`` (an
    SSH encryption algorithm name): not under AEAD ciphers or CTR mode; under CBC, an
    unknown name or none known yet, yes."""
    if not cipher:
        return True
    aead = "-gcm@" in cipher or cipher.startswith("chacha20-poly1305")
    return not (aead or cipher.endswith("-ctr"))


def skip_needless_ignore_packets() -> bool:
    """Send the empty ignore packet only where the cipher needs it (module docstring);
    returns whether the patch is in place."""
    original = getattr(SSHConnection, "send_packet", None)
    if original is None or not hasattr(SSHConnection, "get_extra_info"):
        return False
    if getattr(original, _IGNORE_PATCHED, False):
        return True

    def send_packet(self: Any, pkttype: int, *args: bytes, **kwargs: Any) -> None:
        if (
            pkttype == MSG_IGNORE
            and args == _EMPTY
            and not needs_ignore_packets(self.get_extra_info("send_cipher"))
        ):
            return
        original(self, pkttype, *args, **kwargs)

    setattr(send_packet, _IGNORE_PATCHED, True)
    SSHConnection.send_packet = send_packet  # type: ignore[method-assign]
    return True
