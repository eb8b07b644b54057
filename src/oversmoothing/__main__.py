"""``python -m oversmoothing`` = the book runner's command line (see ``oversmoothing.cli``)."""
from .cli import main

raise SystemExit(main())
