"""`python -m pdtui.proxy ...` — the same as `pdtui proxy ...`."""

from __future__ import annotations

import sys

from pdtui.proxy.cli import main

if __name__ == "__main__":
    sys.exit(main())
