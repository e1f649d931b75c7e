"""One writer process of the concurrent audit test: ``python audit_worker.py PATH KEY N NAME``
appends N sealed records, then closes the log (sealing its last ones)."""

from __future__ import annotations

import sys

from blameset.instrument.audit import AuditLog


def main() -> None:
    path, key, n, name = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    with AuditLog(path, key=key, emit=False, seal_every=25) as log:
        for i in range(n):
            log.record(actor=name, action="write", target=f"{name}-{i}", result="ok")


if __name__ == "__main__":
    main()
