"""`python -m mtd_trainer train|evaluate --config FILE`."""

from .cli import main

raise SystemExit(main())
