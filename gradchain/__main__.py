"""``python -m gradchain``: the command-line interface."""

from gradchain.app.cli import main

raise SystemExit(main())
