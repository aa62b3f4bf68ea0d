"""Reading .aip sources: what a readable .aip file is, and what to say when one is not.

The CLI reads the file it is given and the checker the files it imports, both
through :func:`read_bytes` and :func:`decode`: at most ``MAX_INPUT_BYTES``,
UTF-8 text (a BOM is dropped) without NUL bytes. Whatever stops a file from
being read is an :class:`Unreadable` with a message and a help line, which the
caller reports where it belongs (E001 for the file named on the command line,
E153 at an ``import``).
"""

from __future__ import annotations

import errno
import os
import stat
import sys

# The largest input read (README, "Speed and robustness"): a 10,000-stage pipeline
# is about 3 MiB; memory grows with the input, so reading is bounded, also from
# stdin and devices (`aipc check /dev/zero`).
MAX_INPUT_MIB = 16
MAX_INPUT_BYTES = MAX_INPUT_MIB * 2**20


class Unreadable(Exception):
    """Why a file cannot be checked: ``message`` names it, ``help`` says what to do."""

    def __init__(self, message: str, help: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.help = help


def read_bytes(path: str, shown: str | None = None, *, regular_only: bool = False) -> bytes:
    """The bytes of ``path`` (``-`` is stdin), at most MAX_INPUT_BYTES of them.

    ``shown`` is how messages name the file. With ``regular_only``, anything but a
    regular file (a FIFO, a device, a directory) is refused before it is opened:
    an import never blocks on a pipe nor reads a device.
    """
    shown = shown or ("<stdin>" if path == "-" else path)
    try:
        if path == "-":
            if sys.stdin is None:
                raise OSError(errno.EBADF, "standard input is closed")
            data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
        else:
            if regular_only:
                mode = os.stat(path).st_mode
                if stat.S_ISDIR(mode):
                    raise IsADirectoryError(errno.EISDIR, "it is a directory")
                if not stat.S_ISREG(mode):
                    raise Unreadable(f"cannot read `{shown}`: it is not a regular file",
                                     "a .aip file is a regular file of text")
            with open(path, "rb") as handle:
                data = handle.read(MAX_INPUT_BYTES + 1)
    except FileNotFoundError:
        raise Unreadable(f"cannot read `{shown}`: no such file", "check the path") from None
    except IsADirectoryError:
        raise Unreadable(f"cannot read `{shown}`: it is a directory", "name a .aip file inside it") from None
    except PermissionError:
        raise Unreadable(f"cannot read `{shown}`: permission denied") from None
    except OSError as error:
        raise Unreadable(f"cannot read `{shown}`: {error.strerror or error}") from None
    except (ValueError, UnicodeError):  # a NUL byte or a lone surrogate in the path
        raise Unreadable(f"cannot read `{shown}`: not a valid file name") from None
    if len(data) > MAX_INPUT_BYTES:
        raise Unreadable(f"`{shown}` is larger than {MAX_INPUT_MIB} MiB, the most aipc reads",
                         f"aipc reads .aip files of up to {MAX_INPUT_MIB} MiB (10,000 stages take about 3 MiB)")
    return data


def decode(data: bytes, shown: str) -> str:
    """UTF-8 text from bytes (a BOM is dropped); binary or other encodings are Unreadable."""
    if b"\x00" in data:
        raise Unreadable(f"`{shown}` is a binary file, not .aip text", "a .aip file is UTF-8 text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise Unreadable(f"`{shown}` is not UTF-8 text (byte 0x{data[error.start]:02x} at line {line})",
                         "re-save the file as UTF-8") from None


def normalize_newlines(text: str) -> str:
    """CRLF and lone CR become LF, and a leading BOM goes: offsets then match what
    editors call lines and columns."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def read_text(path: str) -> str:
    """An imported file's text, as the checker reads it from disk (a regular file only)."""
    return normalize_newlines(decode(read_bytes(path, regular_only=True), path))
