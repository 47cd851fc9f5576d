"""The attach socket under a state directory too deep for ``sockaddr_un``: the
portable branch macOS and the BSDs take (no ``O_PATH``, no /proc/self/fd), run here
with ``O_PATH`` hidden, binds and connects a real Unix socket; a name too long even
so fails with a message saying what to do."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from console.attach import protocol
from console.attach.protocol import SUN_PATH_MAX, addressable, proc_fd_available


@pytest.fixture
def no_proc_fd(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process as macOS sees it: no O_PATH."""
    if hasattr(os, "O_PATH"):
        monkeypatch.delattr(os, "O_PATH")
    assert not proc_fd_available()


def deep_dir(tmp_path: Path) -> Path:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    return deep


def test_linux_uses_proc_fd() -> None:
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("no /proc here")
    assert proc_fd_available()


@pytest.mark.usefixtures("no_proc_fd")
def test_the_portable_branch_binds_and_connects_a_deep_socket(tmp_path: Path) -> None:
    sock_path = deep_dir(tmp_path) / "shop-deep.sock"
    assert len(os.fsencode(str(sock_path))) > 108
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with addressable(sock_path) as name:
            assert not name.startswith("/proc/") and len(os.fsencode(name)) < SUN_PATH_MAX
            short_dir = Path(name).parent.parent
            server.bind(name)
        server.listen(1)
        assert sock_path.exists()  # made in the real directory, through the link
        assert not short_dir.exists()  # the private link directory is gone again
        with addressable(sock_path) as name:
            client.connect(name)
        peer, _ = server.accept()
        client.sendall(b"hello")
        assert peer.recv(5) == b"hello"
        peer.close()
    finally:
        client.close()
        server.close()


@pytest.mark.usefixtures("no_proc_fd")
def test_a_name_too_long_even_so_says_what_to_do(tmp_path: Path) -> None:
    sock_path = tmp_path / ("x" * 120 + ".sock")
    before = set(Path("/tmp").glob("rd*"))
    with pytest.raises(OSError) as info, addressable(sock_path):
        pass
    assert "too long for a Unix socket address" in str(info.value)
    assert "ROLLDECK_STATE_DIR" in str(info.value)
    assert not [p for p in set(Path("/tmp").glob("rd*")) - before if (p / "d").is_symlink()]


def test_short_paths_are_used_as_they_are(tmp_path: Path) -> None:
    short = Path("/tmp") / "x.sock"
    with addressable(short) as name:
        assert name == str(short)
    assert protocol.SUN_PATH_MAX <= 104  # fits macOS's sun_path too
