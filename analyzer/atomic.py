"""Atomic outputs: a reader sees the old file or the new one, never half of one.

Files are written to a temporary sibling and renamed over the target (``os.replace`` is atomic
on POSIX within one filesystem). Directories (a snapshot, a report) are built in a temporary
sibling and swapped in with two renames; a crash leaves either the old directory or the new one,
plus at most a stale ``.tmp-*`` sibling that the next write removes.

A run folder gets several files from one command (``simulate``: cascade.json and five Parquet
tables) and files from other commands beside them. :func:`staged_folder` makes one command's
write all-or-nothing: the command writes into a staging sibling that starts as a hard-linked copy
of the folder, and the staging folder is exchanged with the real one in one step
(``renameat2(RENAME_EXCHANGE)`` on Linux). Killed at any point, the folder holds the previous
complete run or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any as Buffer  # a bytes-like object (typing.Buffer is Python 3.12)

from analyzer.errors import ContagionError

RENAME_EXCHANGE = 2
AT_FDCWD = -100


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes | Sequence[Buffer], *, durable: bool = True) -> Path:
    """Write ``data`` (bytes, or buffers written in turn) to ``path`` atomically (fsync, then
    rename over the target).

    The file gets the mode an ordinary ``open()`` would give (0666 less the umask), not
    mkstemp's private 0600, so a report can be shared. ``durable=False`` skips the fsync: the
    rename still shows a killed process's file whole or not at all, and only a crash of the
    machine may leave it damaged (for a cache that reads a damaged file as missing).
    """
    path = Path(path)
    if path.is_dir():
        raise ContagionError(f"{path}: is a folder, expected a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    except OSError as exc:
        raise ContagionError(f"{path}: cannot write there ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            parts: Sequence[Buffer] = [data] if isinstance(data, bytes) else data
            for part in parts:
                handle.write(part)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Build a directory in a temporary sibling; on success it replaces ``path`` whole.

    On an exception the temporary directory is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists() and _exchange(tmp, path):   # one step: never a moment without the folder
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = None
    if path.exists():
        old = path.parent / f".{path.name}.tmp-old-{os.getpid()}"
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def check_output_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """``path`` when a folder can be written there (it is a folder, or can be created as one);
    else a ContagionError naming ``option``. Nothing is created."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ContagionError(f"{option} {path}: exists and is not a folder")
    here = Path.cwd().resolve()
    if path.resolve() in (here, *here.parents):     # a run's folder is replaced whole (staged_folder)
        raise ContagionError(f"{option} {path}: is the current folder or holds it; name another folder with {option}")
    ancestor = path
    while not ancestor.exists():
        if ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ContagionError(f"{option} {path}: {ancestor} is not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ContagionError(f"{option} {path}: {ancestor} is not writable")
    return path


def check_output_file(path: str | os.PathLike, option: str) -> Path:
    """``path`` when a file can be written there (not a folder; its folder can be made)."""
    path = Path(path)
    if path.is_dir():
        raise ContagionError(f"{option} {path}: is a folder, expected a file name")
    check_output_dir(path.parent, option)
    return path


def _libc_renameat2():
    if not sys.platform.startswith("linux"):
        return None
    with contextlib.suppress(OSError, AttributeError):
        function = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).renameat2
        function.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
        return function
    return None


_RENAMEAT2 = _libc_renameat2()


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step; False where the system cannot (then the caller renames twice)."""
    if _RENAMEAT2 is None:
        return False
    return _RENAMEAT2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0


def _link_tree(source: Path, target: Path) -> None:
    """``target`` (an empty folder) as a copy of ``source`` whose files are hard links: free in
    time and space. Writers must replace files (atomic_write_*), never write into them."""
    for entry in os.scandir(source):
        if entry.name.startswith(".") and (".tmp-" in entry.name or ".stage-" in entry.name):
            continue   # another writer's leftovers
        src, dst = Path(entry.path), target / entry.name
        if entry.is_symlink():
            os.symlink(os.readlink(src), dst)
        elif entry.is_dir():
            dst.mkdir()
            _link_tree(src, dst)
        else:
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)


@contextlib.contextmanager
def staged_folder(path: str | os.PathLike, *, discard: tuple[str, ...] = ()) -> Iterator[Path]:
    """Stage one command's writes to the folder ``path``; on success they appear all at once.

    Yields a staging folder holding what ``path`` holds now (hard links), minus the names in
    ``discard`` (outputs the command makes stale). On an exception the staging folder is removed
    and ``path`` is untouched (not even created).
    """
    path = Path(path)
    check_output_dir(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.stage-*"):
            shutil.rmtree(stale, ignore_errors=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{path.name}.stage-", dir=path.parent))
    except OSError as exc:
        raise ContagionError(f"--out {path}: cannot write there ({exc.strerror or exc})") from None
    try:
        os.chmod(stage, 0o777 & ~_umask())
        if path.is_dir():
            _link_tree(path, stage)
            for name in discard:
                _remove_path(stage / name)
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if not path.exists():
        os.replace(stage, path)
    elif _exchange(stage, path):
        shutil.rmtree(stage, ignore_errors=True)   # now the previous run
    else:
        old = path.parent / f".{path.name}.stage-old-{os.getpid()}"
        os.replace(path, old)
        os.replace(stage, path)
        shutil.rmtree(old, ignore_errors=True)


def _remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def final_path(written: Path, stage: Path, folder: Path) -> Path:
    """Where ``written`` (a path inside ``stage``) is once the stage is in place as ``folder``."""
    return Path(folder) / Path(written).relative_to(stage)
