"""Reading a file a user names, with its size bounded before anything is parsed.

A spec, a scenario or an inventory is text written by people: megabytes of it is a
mistake or an attack, and ``rolldeck check /dev/zero`` must end in one line and exit
2, not in a MemoryError after reading gigabytes. :func:`read_limited` refuses a file
larger than its limit before reading it in full (a regular file by its size, a pipe
or a device by reading at most one byte past the limit).
"""

from __future__ import annotations

import os

from console.core.errors import InputError

MIB = 1024 * 1024
# Specs and scenarios: the largest real ones are a few kilobytes.
MAX_INPUT_BYTES = 10 * MIB


def size_words(n: int) -> str:
    """``10 MiB``, ``4,096 bytes``."""
    return f"{n / MIB:.1f}".removesuffix(".0") + " MiB" if n >= MIB else f"{n:,} bytes"


def read_limited(file: str, limit: int = MAX_INPUT_BYTES, what: str = "the file") -> bytes:
    """The bytes of ``file``, or an InputError naming it when it is larger than
    ``limit``. OSError (missing, a directory, no permission) passes through: each
    loader words those its own way."""
    with open(file, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            raise InputError(
                f"{what} is larger than {size_words(limit)} ({size_words(size)}): refused "
                "before parsing",
                file=file,
            )
        data = fh.read(limit + 1)
    if len(data) > limit:  # a pipe or a device: its size is only known by reading
        raise InputError(
            f"{what} is larger than {size_words(limit)}: refused before parsing", file=file
        )
    return data


def universal_newlines(text: str) -> str:
    """``\\r\\n`` and ``\\r`` as ``\\n``, as a file opened in text mode reads them."""
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text
