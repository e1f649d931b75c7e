"""blameset cli: the `blameset` command (:mod:`blameset.cli.app`) and the demo application it
runs (:mod:`blameset.cli.demo`). Importing this package loads nothing else."""
