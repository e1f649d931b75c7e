"""VersionSet: every version that shapes an AI call's output (code, model, prompt, config, ...)
folded into one canonical string and a 12-hex fingerprint, the key attribution groups by.

Canonical form: components sorted by name, ``name=value`` pairs joined with ``;``, e.g.
``code=3f2a91c;config=t0.7;model=gpt-4o-2024-08-06;prompt=outline@v4``. The id is the first 12 hex
digits of sha256 of that string (UTF-8). Both are pinned by tests: reports written today must group
with reports written next year.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from . import contract

__all__ = ["VersionSet", "check_component", "span_attributes"]

ENV_PREFIX = "BLAMESET_VERSION_"
_NAME = re.compile(r"[a-z0-9][a-z0-9_.\-]*")
_BAD_VALUE = re.compile(r"[;\n\r]")


def check_component(name: str, value: str) -> None:
    """Refuse a component name or value that would corrupt the canonical string."""
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"version component name {name!r} must be lower case letters, digits, '_', '.' or '-'"
        )
    if not isinstance(value, str) or not value:
        raise ValueError(
            f"version component {name!r} needs a non-empty string value, got {value!r}"
        )
    if _BAD_VALUE.search(value):
        raise ValueError(
            f"version component {name!r}: value {value!r} may not contain ';' or newlines"
        )


@dataclass(frozen=True, slots=True, init=False)
class VersionSet(Mapping[str, str]):
    """An immutable set of named versions, e.g. ``VersionSet(code="3f2a91c", prompt="outline@v4")``.

    Components are free-form: any lower-case name works (``index``, ``retriever``, ...). It reads
    like a mapping (``vs["prompt"]``, ``vs.get("model")``) and compares by content.
    """

    components: tuple[tuple[str, str], ...]
    canonical: str = field(compare=False, repr=False)
    id: str = field(compare=False, repr=False)
    attributes: Mapping[str, str] = field(compare=False, repr=False, hash=False)
    """The contract's attributes for this whole set (the resource carries them)."""

    def __init__(self, components: Mapping[str, str] | None = None, /, **kwargs: str) -> None:
        merged = dict(components or {})
        merged.update(kwargs)
        for name, value in merged.items():
            check_component(name, value)
        items = tuple(sorted(merged.items()))
        canonical = ";".join(f"{name}={value}" for name, value in items)
        digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]
        attrs = {contract.VERSION_SET: canonical, contract.VERSION_SET_ID: digest}
        attrs.update((contract.version_attribute(name), value) for name, value in items)
        object.__setattr__(self, "components", items)
        object.__setattr__(self, "canonical", canonical)
        object.__setattr__(self, "id", digest)
        object.__setattr__(self, "attributes", MappingProxyType(attrs))

    # Mapping protocol: a VersionSet is read like the dict of its components.
    def __getitem__(self, name: str) -> str:
        for key, value in self.components:
            if key == name:
                return value
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self.components)

    def __len__(self) -> int:
        return len(self.components)

    def __str__(self) -> str:
        return self.canonical

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={value!r}" for name, value in self.components)
        return f"VersionSet({inner})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (VersionSet, (dict(self.components),))

    def replace(self, **changes: str | None) -> VersionSet:
        """A new set with some components changed; ``None`` removes a component."""
        merged: dict[str, str] = dict(self.components)
        for name, value in changes.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        return VersionSet(merged)

    def diff(self, other: VersionSet) -> list[str]:
        """Names of the components that differ between two sets (added, removed or changed)."""
        mine, theirs = dict(self.components), dict(other.components)
        return sorted(n for n in mine.keys() | theirs.keys() if mine.get(n) != theirs.get(n))

    @classmethod
    def parse(cls, canonical: str) -> VersionSet:
        """Read a canonical string back (``code=3f2a91c;prompt=outline@v4``)."""
        if not canonical:
            return cls()
        components: dict[str, str] = {}
        for part in canonical.split(";"):
            name, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"not a version set: {canonical!r} (part {part!r} has no '=')")
            if name in components:
                raise ValueError(f"not a version set: {canonical!r} (component {name!r} twice)")
            components[name] = value
        return cls(components)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None
    ) -> VersionSet:
        """Build the set from ``BLAMESET_VERSION_<COMPONENT>`` variables.

        ``BLAMESET_VERSION_PROMPT=outline@v4`` gives component ``prompt``. Without a
        ``BLAMESET_VERSION_CODE``, ``code`` falls back to the short commit of the git checkout that
        holds ``cwd`` (the working directory by default), when there is one.
        """
        env = os.environ if environ is None else environ
        components = {
            key[len(ENV_PREFIX) :].lower(): value
            for key, value in env.items()
            if key.startswith(ENV_PREFIX) and value
        }
        if "code" not in components:
            commit = git_commit(Path(cwd) if cwd is not None else Path.cwd())
            if commit:
                components["code"] = commit
        return cls(components)


@functools.lru_cache(maxsize=512)
def span_attributes(effective: VersionSet, base: VersionSet) -> Mapping[str, str]:
    """The version attributes a span carries, given the process's configured (resource) set.

    Every span carries the canonical string and id of the set that served it: those are
    authoritative. The per-component attributes of the configured set live on the resource (OTel's
    place for what is constant per process, sent once per batch, not once per span); a span adds
    ``blameset.version.<c>`` only for components its request overrode, with ``""`` for one the
    override removed, so a backend that merges resource and span attributes (span wins) shows
    the right value for every component.
    """
    attrs = {contract.VERSION_SET: effective.canonical, contract.VERSION_SET_ID: effective.id}
    for name in effective.diff(base):
        attrs[contract.version_attribute(name)] = effective.get(name) or ""
    return MappingProxyType(attrs)


def git_commit(start: Path, length: int = 7) -> str | None:
    """Short hash of HEAD of the git checkout holding ``start``; None outside one.

    Reads ``.git`` directly (HEAD, loose refs, packed-refs, worktree ``gitdir:`` files), so no git
    binary is needed in a slim container image; falls back to ``git rev-parse`` for anything odd.
    """
    for folder in (start, *start.parents):
        dot_git = folder / ".git"
        if dot_git.exists():
            sha = _read_head(dot_git)
            if sha is None:
                sha = _git_rev_parse(folder)
            return sha[:length] if sha else None
    return None


def _read_head(dot_git: Path) -> str | None:
    try:
        git_dir = dot_git
        if dot_git.is_file():  # a worktree or submodule: "gitdir: <path>"
            text = dot_git.read_text().strip()
            if not text.startswith("gitdir:"):
                return None
            git_dir = (dot_git.parent / text[len("gitdir:") :].strip()).resolve()
        head = (git_dir / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head if re.fullmatch(r"[0-9a-f]{40,64}", head) else None
        ref = head[len("ref:") :].strip()
        common = git_dir
        commondir = git_dir / "commondir"
        if commondir.exists():
            common = (git_dir / commondir.read_text().strip()).resolve()
        for base in (git_dir, common):
            loose = base / ref
            if loose.exists():
                return loose.read_text().strip()
        packed = common / "packed-refs"
        if packed.exists():
            for line in packed.read_text().splitlines():
                sha, _, name = line.partition(" ")
                if name == ref:
                    return sha
        return None  # a branch with no commits yet
    except OSError:
        return None


def _git_rev_parse(folder: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
