"""VersionSet: canonical string and id pinned, parsing, environment, git fallback."""

from __future__ import annotations

import hashlib
import pickle
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from blameset.instrument import VersionSet

EXAMPLE = VersionSet(code="3f2a91c", model="gpt-4o-2024-08-06", prompt="outline@v4", config="t0.7")


def test_canonical_string_sorts_components_by_name():
    """The canonical form is DESIGN.md's example, whatever order the components came in."""
    assert EXAMPLE.canonical == "code=3f2a91c;config=t0.7;model=gpt-4o-2024-08-06;prompt=outline@v4"
    reordered = VersionSet(
        prompt="outline@v4", config="t0.7", model="gpt-4o-2024-08-06", code="3f2a91c"
    )
    assert reordered == EXAMPLE
    assert reordered.canonical == EXAMPLE.canonical


def test_id_is_pinned():
    """The id is the first 12 hex of sha256(canonical): pinned so old data groups with new."""
    assert EXAMPLE.id == "ddf00cd55383"
    assert EXAMPLE.id == hashlib.sha256(EXAMPLE.canonical.encode()).hexdigest()[:12]
    assert VersionSet().canonical == ""
    assert VersionSet().id == "e3b0c44298fc"


def test_span_attributes_carry_set_id_and_each_component():
    """attributes holds the contract's names: the set, its id, one per component."""
    assert dict(EXAMPLE.attributes) == {
        "blameset.version_set": EXAMPLE.canonical,
        "blameset.version_set.id": EXAMPLE.id,
        "blameset.version.code": "3f2a91c",
        "blameset.version.config": "t0.7",
        "blameset.version.model": "gpt-4o-2024-08-06",
        "blameset.version.prompt": "outline@v4",
    }


def test_free_form_components_and_mapping_access():
    """Any lower-case component name works, and the set reads like a mapping."""
    vs = VersionSet({"index": "2024-06"}, rag_chunker="v2")
    assert vs["index"] == "2024-06"
    assert vs.get("model") is None
    assert dict(vs) == {"index": "2024-06", "rag_chunker": "v2"}
    assert "index" in vs
    assert len(vs) == 2


def test_frozen_hashable_picklable():
    """A value type: immutable, usable as a dict key, survives pickling (process pools)."""
    with pytest.raises(AttributeError):
        EXAMPLE.canonical = "x"  # type: ignore[misc]
    assert {EXAMPLE: 1}[VersionSet(EXAMPLE)] == 1
    assert pickle.loads(pickle.dumps(EXAMPLE)) == EXAMPLE


def test_replace_and_diff():
    """replace() makes a changed copy (None removes), diff() names what differs."""
    v5 = EXAMPLE.replace(prompt="outline@v5")
    assert v5["prompt"] == "outline@v5"
    assert EXAMPLE["prompt"] == "outline@v4"
    assert EXAMPLE.diff(v5) == ["prompt"]
    assert EXAMPLE.replace(config=None, index="i1").diff(EXAMPLE) == ["config", "index"]


@pytest.mark.parametrize(
    ("components", "problem"),
    [
        ({"Model": "x"}, "lower case"),
        ({"a;b": "x"}, "lower case"),
        ({"model": ""}, "non-empty"),
        ({"prompt": "v1;v2"}, "';'"),
        ({"prompt": "v1\nv2"}, "newlines"),
    ],
)
def test_invalid_components_are_refused_with_a_reason(components, problem):
    """A name or value that would corrupt the canonical string is an error naming the problem."""
    with pytest.raises(ValueError, match=problem):
        VersionSet(components)


names = st.from_regex(r"[a-z0-9][a-z0-9_.\-]{0,12}", fullmatch=True)
values = st.text(min_size=1, max_size=20).filter(
    lambda v: ";" not in v and "\n" not in v and "\r" not in v
)


@given(st.dictionaries(names, values, max_size=6))
def test_parse_round_trips_any_set(components):
    """parse(canonical) gives back the same set, id included, for any valid components."""
    vs = VersionSet(components)
    back = VersionSet.parse(vs.canonical)
    assert back == vs
    assert back.id == vs.id


@pytest.mark.parametrize("bad", ["code", "code=1;code=2", "code=1;;x=2"])
def test_parse_rejects_non_canonical_text(bad):
    """Text that is not a canonical string is refused with a message, not misread."""
    with pytest.raises(ValueError, match=r"not a version set|lower case"):
        VersionSet.parse(bad)


def test_from_env_reads_prefixed_variables(tmp_path: Path):
    """BLAMESET_VERSION_<COMPONENT> variables become lower-case components."""
    env = {
        "BLAMESET_VERSION_CODE": "abc1234",
        "BLAMESET_VERSION_PROMPT": "outline@v4",
        "BLAMESET_VERSION_RAG_INDEX": "2024-06",
        "BLAMESET_VERSION_EMPTY": "",
        "OTHER": "x",
    }
    vs = VersionSet.from_env(env, cwd=tmp_path)
    assert dict(vs) == {"code": "abc1234", "prompt": "outline@v4", "rag_index": "2024-06"}


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def test_from_env_falls_back_to_the_git_commit(tmp_path: Path):
    """Without BLAMESET_VERSION_CODE, code is the short HEAD commit of the enclosing checkout."""
    _git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "f.txt").write_text("x")
    _git(tmp_path, "add", "f.txt")
    _git(tmp_path, "commit", "-q", "-m", "one")
    head = _git(tmp_path, "rev-parse", "HEAD")
    sub = tmp_path / "pkg" / "deeper"
    sub.mkdir(parents=True)
    assert VersionSet.from_env({}, cwd=sub)["code"] == head[:7]
    _git(tmp_path, "pack-refs", "--all")  # the ref now lives only in packed-refs
    assert VersionSet.from_env({}, cwd=sub)["code"] == head[:7]
    _git(tmp_path, "checkout", "-q", "--detach")
    assert VersionSet.from_env({}, cwd=sub)["code"] == head[:7]
    assert VersionSet.from_env({"BLAMESET_VERSION_CODE": "pinned"}, cwd=sub)["code"] == "pinned"


def test_from_env_outside_a_checkout_has_no_code(tmp_path: Path):
    """No git checkout and no variable: no code component rather than a made-up one."""
    assert "code" not in VersionSet.from_env({}, cwd=tmp_path)
