"""`chatops` with the patches named in $BENCH_PATCHES applied first (see bench/patches.py).

Usage: chatops_patched.py serve --port N ...   (the same arguments as `chatops`)
"""

from __future__ import annotations

import _common  # noqa: F401  (sys.path)
import patches

if __name__ == "__main__":
    patches.apply()
    from bot.cli import main

    raise SystemExit(main())
