"""Where aipc's output goes: the files of `-o` and `aipc fmt`, and the standard streams.

:func:`write_output` is the one way a command writes a file:

- an existing regular file is replaced atomically (a temporary file next to it,
  renamed over it): a reader sees the old content or the new, and a failed write
  (a full disk) leaves the old file as it was; its mode and owner are kept;
- through a symbolic link, the file it points to is replaced and the link stays;
- a file with several hard links is rewritten in place, so that every link sees
  the new content; if writing fails, the old content is put back;
- what is not a regular file (a device such as /dev/null, a FIFO, /dev/stdout) is
  written through, never replaced by a regular file;
- a read-only file is an error (root included): aipc does not replace what its
  owner protected;
- `DIR/` (an existing directory, or one to create when the path ends with a
  slash) receives the command's usual file name.

:func:`install_streams` makes stdout and stderr write UTF-8 whatever the locale,
and turns a failed write on them into an :class:`OutputError` naming the stream.
A failed write is an I/O error (the CLI exits 1 naming what it could not
write), never an internal error.
"""

from __future__ import annotations

import errno
import io
import os
import re
import stat
import sys


class OutputError(Exception):
    """What aipc could not write (a path, or "standard output") and why."""

    def __init__(self, target: str, error: OSError) -> None:
        self.target = target
        self.reason = error.strerror or str(error)
        super().__init__(f"cannot write {target}: {self.reason}")


def write_output(path: str, data: bytes, default_name: str | None = None) -> str:
    """Write ``data`` to ``path`` as the module describes; returns the path written.

    With ``default_name``, a path naming a directory (or ending with a slash, the
    directory then being created) means that name inside it.
    """
    from aipc.diagnostics import visible

    try:
        target = output_path(path, default_name)
        if target != path and not os.path.isdir(path):
            os.makedirs(path)
        path = target
        _write(path, data)
    except BrokenPipeError:  # a FIFO or pipe whose reader stopped reading, as on stdout
        raise
    except OSError as error:
        raise OutputError(f"`{visible(path)}`", error) from None
    return path


def output_path(path: str, default_name: str | None = None) -> str:
    """The file ``write_output`` writes for ``path``: with ``default_name``, that name
    inside a directory (an existing one, or a path ending with a slash)."""
    if default_name is not None and (path.endswith(("/", os.sep)) or os.path.isdir(path)):
        return os.path.join(path, default_name)
    return path


def _write(path: str, data: bytes) -> None:
    descriptor, target = _resolve(path)
    if descriptor is not None:
        _write_descriptor(descriptor, path, data)
        return
    try:
        status = os.stat(target)
    except FileNotFoundError:
        _replace(target, data, None)
        return
    if stat.S_ISDIR(status.st_mode):
        raise IsADirectoryError(errno.EISDIR, "it is a directory")
    if not stat.S_ISREG(status.st_mode):  # a device, a FIFO, a socket: write to it
        fd = os.open(target, os.O_WRONLY)
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        return
    if not status.st_mode & 0o222 or not os.access(target, os.W_OK):
        raise PermissionError(errno.EACCES, "the file is read-only")
    if status.st_nlink > 1 or (status.st_uid != os.geteuid() and os.geteuid() != 0):
        _rewrite_in_place(target, data)  # a new file would split the links, or change the owner
    else:
        _replace(target, data, status)


# A process's file descriptors as files: /dev/stdout is /proc/self/fd/1.
_DESCRIPTORS = re.compile(r"/proc/(?:self|thread-self|[0-9]+)(?:/task/[0-9]+)?/fd")
_MAX_LINKS = 40  # symbolic links followed, as Linux does


def _resolve(path: str) -> tuple[int | None, str]:
    """Follow symbolic links one at a time: the file they end at, or, when the way
    passes through a file descriptor of this process (/dev/stdout, /dev/fd/3),
    that descriptor, to write to as the shell set it up (appending, a pipe...)."""
    for _ in range(_MAX_LINKS):
        directory = os.path.realpath(os.path.dirname(os.path.abspath(path)))
        name = os.path.basename(path)
        if _DESCRIPTORS.fullmatch(directory):
            owner = directory.split("/")[2]
            if name.isdigit() and owner in ("self", "thread-self", str(os.getpid())):
                return int(name), path
            return None, os.path.join(directory, name)  # another process's: opened as a device
        path = os.path.join(directory, name)
        if not os.path.islink(path):
            return None, path
        path = os.path.join(directory, os.readlink(path))
    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))


def _write_descriptor(fd: int, path: str, data: bytes) -> None:
    for stream in (sys.stdout, sys.stderr):  # what was printed before comes first
        if stream is not None:
            stream.flush()
    try:
        _write_all(fd, data)
    except OSError as error:
        if error.errno == errno.EBADF:
            raise OSError(errno.EBADF, f"file descriptor {fd} is not open for writing") from None
        raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _replace(target: str, data: bytes, status: os.stat_result | None) -> None:
    """Write a temporary file next to ``target`` and rename it over ``target``."""
    directory, name = os.path.split(target)
    # A new file gets the mode the umask gives; an existing one keeps its own,
    # set before the rename (the temporary file is private until then).
    mode = 0o666 if status is None else 0o600
    for _ in range(100):
        temporary = os.path.join(directory, f".{name}.aipc-{os.urandom(4).hex()}.tmp")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(errno.EEXIST, "no free temporary file name")
    try:
        try:
            _write_all(fd, data)
            if status is not None:
                if (status.st_uid, status.st_gid) != (os.geteuid(), os.getegid()):
                    try:
                        os.fchown(fd, status.st_uid, status.st_gid)
                    except PermissionError:  # a group this user is not in: the file takes the user's
                        pass
                os.fchmod(fd, stat.S_IMODE(status.st_mode))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise


def _rewrite_in_place(target: str, data: bytes) -> None:
    """Overwrite the file itself (every hard link sees it); on failure, put the
    old content back into the blocks it had."""
    fd = os.open(target, os.O_RDWR | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        old = b"".join(chunks)
        try:
            _write_at_start(fd, data)
            os.fsync(fd)
        except OSError:
            try:
                _write_at_start(fd, old)
            except OSError:
                pass
            raise
    finally:
        os.close(fd)


def _write_at_start(fd: int, data: bytes) -> None:
    view, offset = memoryview(data), 0
    while offset < len(data):
        offset += os.pwrite(fd, view[offset:], offset)
    os.ftruncate(fd, len(data))


# ------------------------------------------------------------- standard streams


class _Stream(io.FileIO):
    """fd 1 or 2, whose failed writes name the stream (a closed pipe stays a
    BrokenPipeError, which the CLI treats as a reader that stopped reading)."""

    label = ""

    def write(self, data) -> int:
        try:
            return super().write(data)
        except BrokenPipeError:
            raise
        except OSError as error:
            raise OutputError(self.label, error) from None


def install_streams() -> None:
    """stdout and stderr write UTF-8 whatever the locale (characters a terminal
    cannot show, such as lone surrogates from undecodable file names, as
    escapes); a failed write raises OutputError. Streams already replaced (by a
    test harness) are left alone."""
    for name, label, line_buffering in (("stdout", "standard output", False),
                                        ("stderr", "standard error", True)):
        current = getattr(sys, name)
        if current is None or current is not getattr(sys, f"__{name}__"):
            continue
        try:
            current.flush()
            raw = _Stream(current.fileno(), "w", closefd=False)
        except (OSError, ValueError):  # not a real file descriptor
            continue
        raw.label = label
        setattr(sys, name, io.TextIOWrapper(io.BufferedWriter(raw), encoding="utf-8", errors="backslashreplace",
                                            newline="\n", line_buffering=line_buffering or raw.isatty()))


def report_output_error(prefix: str, error: OutputError) -> None:
    """Print ``prefix: error: cannot write ...`` on stderr. A stream that failed
    is pointed at /dev/null, so that what is still buffered for it goes nowhere
    when the process exits (instead of failing again)."""
    failed = {"standard output": sys.stdout, "standard error": sys.stderr}.get(error.target)
    if failed is not None:
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), failed.fileno())
        except (OSError, ValueError, AttributeError):
            pass
    if failed is sys.stderr:
        return
    try:
        print(f"{prefix}: error: {error}", file=sys.stderr, flush=True)
    except OutputError:  # stderr fails too: the exit status is all that is left
        report_output_error(prefix, OutputError("standard error", OSError()))
