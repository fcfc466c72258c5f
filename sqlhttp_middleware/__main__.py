"""``python -m sqlhttp_middleware serve ...``: see :mod:`sqlhttp_middleware.cli`."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
