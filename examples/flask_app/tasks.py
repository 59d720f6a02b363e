"""The Flask example's tasks: a module of their own, so the cluster's workers can import them."""

from __future__ import annotations

import time


def word_stats(text: str, delay_s: float = 0.0) -> dict[str, int]:
    """Count the words and characters of ``text``, after ``delay_s`` seconds of pretend work."""
    time.sleep(delay_s)
    words = text.split()
    return {"words": len(words), "characters": len(text), "unique": len({w.lower() for w in words})}
