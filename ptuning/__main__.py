"""``python -m ptuning ...``: see ``ptuning.cli``."""

from ptuning.cli import main

raise SystemExit(main())
