"""``python -m oversmoothing`` = the book runner's command line (see ``oversmoothing.book.cli``)."""
from .book.cli import main

raise SystemExit(main())
