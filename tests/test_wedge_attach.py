"""``rolldeck attach`` to an owner that froze: the client gives up after its silence
bound (the owner sends at least a stats line every second) instead of waiting forever.
The owner here is a real Unix-socket peer that says hello, sends its snapshot, then
answers nothing, which is what a SIGSTOPped owner looks like from the client."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from console.attach import client
from console.attach.protocol import VERSION, encode


async def test_attach_to_a_frozen_owner_ends_after_the_silence_bound() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.sock"
        hung: list[asyncio.StreamWriter] = []

        async def owner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readline()  # the client's hello
            writer.write(encode({"type": "hello", "version": VERSION, "rollout_id": "r"}))
            writer.write(encode({"type": "snapshot"}))
            writer.write(encode({"type": "snapshot_end"}))
            await writer.drain()
            hung.append(writer)  # then silence: frozen

        server = await asyncio.start_unix_server(owner, path=str(path))
        try:
            remote = await client.connect(path, read_only=True, silence=0.5)
            started = time.monotonic()
            async with asyncio.timeout(10):
                await remote.wait()
            took = time.monotonic() - started
            assert remote.error is not None
            assert "did not answer for 0.5 s" in remote.error
            assert 0.4 <= took < 5.0, took
        finally:
            for writer in hung:
                writer.close()
            server.close()
            await server.wait_closed()
