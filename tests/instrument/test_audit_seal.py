"""The audit log's seal: HMAC-signed digests chained to each other and kept in ``<log>.seal``
prove the log unforged; each tampering of issue 14 is detected with the key and named."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from blameset.cli.app import app
from blameset.instrument.audit import GENESIS, AuditLog, _digest, seal_path, verify

KEY = "k3y-for-tests-only"
runner = CliRunner()


def _sealed_log(tmp_path: Path, n: int = 10, every: int = 4) -> Path:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, key=KEY, emit=False, seal_every=every) as log:
        for i in range(n):
            log.record(actor="u", action="export", target=f"doc-{i}", result="ok")
    return path


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def _write(path: Path, lines: list[dict]) -> None:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def _rechain(lines: list[dict]) -> list[dict]:
    """What a forger without the key does: renumber the records and recompute every hash."""
    prev, seq, out = GENESIS, 0, []
    for line in lines:
        if line.get("type") == "digest":
            out.append(line)
            continue
        seq += 1
        body = {k: v for k, v in line.items() if k != "hash"}
        body["seq"], body["prev_hash"] = seq, prev
        line = {**body, "hash": _digest(prev, body)}
        prev = line["hash"]
        out.append(line)
    return out


def _records(lines: list[dict]) -> list[int]:
    return [i for i, x in enumerate(lines) if x.get("type") != "digest"]


def test_a_sealed_log_verifies_with_its_key(tmp_path: Path):
    """10 records sealed every 4 and at close: 3 digests, all verified, nothing unsealed."""
    path = _sealed_log(tmp_path)
    result = verify(path, key=KEY)
    assert result.ok and result.keyed
    assert (result.records, result.digests) == (10, 3)
    assert seal_path(path).is_file()


def _edit_and_rechain(lines: list[dict]) -> list[dict]:
    lines[_records(lines)[1]]["result"] = "denied"
    return _rechain(lines)


def _delete_and_rechain(lines: list[dict]) -> list[dict]:
    del lines[_records(lines)[2]]
    return _rechain(lines)


def _reorder_and_rechain(lines: list[dict]) -> list[dict]:
    a, b = _records(lines)[0:2]
    lines[a], lines[b] = lines[b], lines[a]
    return _rechain(lines)


def _drop_last_record(lines: list[dict]) -> list[dict]:
    del lines[_records(lines)[-1]]
    return _rechain(lines)


def _cut_tail_with_its_digest(lines: list[dict]) -> list[dict]:
    last_digest = max(i for i, x in enumerate(lines) if x.get("type") == "digest")
    return lines[: last_digest - 1]  # the last record and the final digest go


def _remove_a_digest_period(lines: list[dict]) -> list[dict]:
    digests = [i for i, x in enumerate(lines) if x.get("type") == "digest"]
    return _rechain(lines[: digests[0] + 1] + lines[digests[1] + 1 :])


def _forge_an_append(lines: list[dict]) -> list[dict]:
    last = lines[_records(lines)[-1]]
    forged = {**{k: v for k, v in last.items() if k != "hash"}, "target": "doc-x"}
    forged["seq"], forged["prev_hash"] = last["seq"] + 1, last["hash"]
    return [*lines, {**forged, "hash": _digest(last["hash"], forged)}]


def _forge_an_append_and_its_digest(lines: list[dict]) -> list[dict]:
    out = _forge_an_append(lines)
    digest = {**lines[-1], "digest_seq": lines[-1]["digest_seq"] + 1}
    digest["last_seq"], digest["last_hash"] = out[-1]["seq"], out[-1]["hash"]
    digest["first_seq"], digest["prev_digest"] = lines[-1]["last_seq"] + 1, lines[-1]["hmac"]
    digest["hmac"] = "f" * 64
    return [*out, digest]


def _empty(lines: list[dict]) -> list[dict]:
    return []


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (_edit_and_rechain, "sealed_records_changed"),
        (_delete_and_rechain, "sealed_records_changed"),
        (_reorder_and_rechain, "sealed_records_changed"),
        (_drop_last_record, "sealed_records_changed"),
        (_cut_tail_with_its_digest, "truncated"),
        (_remove_a_digest_period, "digests_removed"),
        (_forge_an_append, "unsealed_tail"),
        (_forge_an_append_and_its_digest, "forged_digest"),
        (_empty, "truncated"),
    ],
)
def test_each_tampering_is_detected_with_the_key_and_named(
    tmp_path: Path, tamper: Callable[[list[dict]], list[dict]], expected: str
):
    """Edits, deletions, reordering (hashes recomputed), a cut tail, a removed digest period,
    forged appends and an emptied file: the chain alone passes them, the key does not."""
    path = _sealed_log(tmp_path)
    _write(path, tamper(_lines(path)))
    result = verify(path, key=KEY)
    assert not result.ok and not result.malformed
    assert result.tampering == expected, result.problem
    cli = runner.invoke(
        app, ["audit", "verify", str(path), "--key", "env:AUDIT_KEY_T"], env={"AUDIT_KEY_T": KEY}
    )
    assert cli.exit_code == 1, cli.output
    assert expected in cli.output


def test_recomputed_hashes_fool_the_chain_but_not_the_seal(tmp_path: Path):
    """An edit with every later hash recomputed passes the keyless check, which says forgery
    cannot be ruled out; with the key it is caught."""
    path = _sealed_log(tmp_path)
    _write(path, [x for x in _edit_and_rechain(_lines(path)) if x.get("type") != "digest"])
    seal_path(path).unlink()
    assert verify(path).ok
    cli = runner.invoke(app, ["audit", "verify", str(path)])
    assert cli.exit_code == 0
    assert "forgery cannot be ruled out" in cli.output
    assert verify(path, key=KEY).tampering == "seal_missing"


def test_a_wrong_key_or_a_malformed_line_exits_2_not_1(tmp_path: Path):
    """Not proven tampering: another key, a line that is not JSON, an unreadable key file."""
    path = _sealed_log(tmp_path)
    other = tmp_path / "other.key"
    other.write_text("another key\n")
    result = runner.invoke(app, ["audit", "verify", str(path), "--key", str(other)])
    assert result.exit_code == 2
    assert "another key" in result.output
    missing = runner.invoke(app, ["audit", "verify", str(path), "--key", str(tmp_path / "no")])
    assert missing.exit_code == 2
    with path.open("a") as handle:
        handle.write("not json\n")
    garbage = runner.invoke(app, ["audit", "verify", str(path)])
    assert garbage.exit_code == 2
    assert "not a valid audit log" in garbage.output


def test_a_key_file_and_the_environment_seal_like_key(tmp_path: Path, monkeypatch):
    """BLAMESET_AUDIT_KEY_FILE seals without key= in code; --key FILE verifies."""
    key_file = tmp_path / "audit.key"
    key_file.write_text(KEY + "\n")
    monkeypatch.setenv("BLAMESET_AUDIT_KEY_FILE", str(key_file))
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, emit=False) as log:
        log.record(actor="u", action="a", target="t", result="ok")
    result = runner.invoke(app, ["audit", "verify", str(path), "--key", str(key_file)])
    assert result.exit_code == 0, result.output
    assert "sealed (1 records, 1 digests" in result.output


def test_seal_vouches_for_records_a_stopped_writer_left(tmp_path: Path):
    """A writer that never closed leaves an unsealed tail; `blameset audit seal` seals it."""
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, key=KEY, emit=False, seal_every=100)
    log.record(actor="u", action="a", target="t", result="ok")
    assert verify(path, key=KEY).tampering == "seal_missing"
    key_file = tmp_path / "k"
    key_file.write_text(KEY)
    sealed = runner.invoke(app, ["audit", "seal", str(path), "--key", str(key_file)])
    assert sealed.exit_code == 0 and "sealed records 1..1" in sealed.output
    assert verify(path, key=KEY).ok
    log.close()  # nothing left to seal: no second digest
    assert verify(path, key=KEY).digests == 1


def test_four_processes_writing_200_records_each_keep_one_sealed_chain(tmp_path: Path):
    """4 real processes x 200 records, sealing every 25 and at close: one chain, every record
    covered by a verified digest."""
    path = tmp_path / "audit.jsonl"
    worker = Path(__file__).with_name("audit_worker.py")
    procs = [
        subprocess.Popen([sys.executable, str(worker), str(path), KEY, "200", f"w{i}"])
        for i in range(4)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0, 0]
    result = verify(path, key=KEY)
    assert result.ok, result.problem
    assert result.records == 800
    assert result.digests >= 800 // 25
