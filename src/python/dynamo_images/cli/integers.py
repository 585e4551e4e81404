"""Whole numbers as the docker CLI and upstream's scripts read them: ASCII digits only.

Python's int() also takes other scripts' digits ("١٢٣" -> 123), "²" (isdigit() but not int()),
surrounding spaces, "+" and "_"; none of those may reach a command line silently.
"""

from __future__ import annotations

import re

_WHOLE = re.compile(r"-?[0-9]+", re.ASCII)


def parse_int(text: str) -> int | None:
    """The number `text` spells in ASCII digits (with an optional leading "-"), else None."""
    return int(text) if _WHOLE.fullmatch(text) else None
