"""``python -m edged`` and the ``edged`` command."""

from __future__ import annotations

import sys

from edged.cli import main

if __name__ == "__main__":
    sys.exit(main())
