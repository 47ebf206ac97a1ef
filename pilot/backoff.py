"""Waits between retries: exponential, capped, with jitter so that many pilots do not retry in step."""

from __future__ import annotations

from typing import Iterator


def backoff_delays(initial: float, maximum: float) -> Iterator[float]:
    """initial, 2*initial, 4*initial ... capped at maximum, each with +-25% jitter (no thundering herd)."""
    import random  # lazily: only retries need it, not every pilot start

    delay = initial
    while True:
        yield delay * random.uniform(0.75, 1.25)
        delay = min(maximum, delay * 2)
