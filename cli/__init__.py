"""blameset cli: the `blameset` command and the demo application it runs. Importing this package
loads nothing else, and it exports nothing: it is used from the shell.

Its modules: ``app`` (the command: :func:`blameset.cli.app.main`, the console script), one module
per command or noun (``ingest``, ``check``, ``gate``, ``report``, ``attribute``, ``judge``,
``audit``, ``budget``, ``taxonomy``), and ``demo`` (the simulated service `blameset demo` runs).
Modules whose names start with ``_`` are implementation.
"""

__all__: list[str] = []
