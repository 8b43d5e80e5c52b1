"""Small statistics for reports: the Wilson score interval of a proportion."""

from __future__ import annotations

import math

__all__ = ["wilson_interval", "Z95"]

#: The standard normal quantile of 0.975 (two-sided 95 %).
Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (stays inside [0, 1], sound for small n and for
    proportions near 0 or 1, unlike the normal approximation p ± z·sqrt(p(1-p)/n))."""
    if n <= 0:
        raise ValueError("the interval needs at least one trial")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, {n}], got {successes}")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)
