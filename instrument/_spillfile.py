"""Names and descriptors of spill files, shared by the spill writer (``_spill``) and the resend
thread (``_forward``): a leaf, so the two depend on it and not on each other."""

from __future__ import annotations

import hashlib
import os

__all__ = ["destination_key", "release_in_child", "spill_file_key"]


def destination_key(destination: str) -> str:
    """A short, file-name-safe digest of where records go (an endpoint with its headers never
    appears in a file name in clear)."""
    return hashlib.sha256(destination.encode("utf-8")).hexdigest()[:16]


def spill_file_key(name: str) -> str | None:
    """The destination key in a spill file's name (``spans-<host>-<pid>-<ns>@<key>.jsonl``), or
    None for a file written without one (it is left to ``blameset ingest``)."""
    stem = name[: -len(".jsonl")] if name.endswith(".jsonl") else name
    _, at, key = stem.rpartition("@")
    return key if at and key else None


def release_in_child(fd: int) -> None:
    """In a forked child, let go of a descriptor the parent is using (a spill file it writes or
    sends) without flushing anything into it: the child's copy would otherwise hold the parent's
    lock for as long as the child lives. The number is pointed at /dev/null, so a later close or
    flush of the child's copy touches nothing."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        os.dup2(null, fd)
    except OSError:
        pass
    finally:
        os.close(null)
