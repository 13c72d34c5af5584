"""``python -m gradchain``: the command-line interface."""

from gradchain.cli import main

raise SystemExit(main())
