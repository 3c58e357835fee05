"""`python -m swarmd` runs the command-line interface."""

from swarmd.cli import main

raise SystemExit(main())
