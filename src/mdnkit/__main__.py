"""``python -m mdnkit``: the command-line tool."""

from mdnkit.cli import main

raise SystemExit(main())
