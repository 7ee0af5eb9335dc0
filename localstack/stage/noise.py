"""Random draws for the traffic model, from a caller's random.Random (the venv has no numpy).

Exact where it is cheap, a normal approximation where the mean is large (>= 30, where its
error is far below the noise itself); every draw costs at most a few dozen steps, so a tick
stays fast on a small machine.
"""

from __future__ import annotations

import math
import random

LARGE = 30.0  # from this mean on, a normal draw stands in for Poisson/binomial


def poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean >= LARGE:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    # Exact: count uniforms until their running product drops below e^-mean.
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


def binomial(rng: random.Random, n: int, p: float) -> int:
    if n <= 0 or p <= 0:
        return 0
    if p >= 1:
        return n
    if p > 0.5:  # the skip loop below is short only for the rarer outcome
        return n - binomial(rng, n, 1.0 - p)
    if n * p >= LARGE:
        return min(n, max(0, round(rng.gauss(n * p, math.sqrt(n * p * (1 - p))))))
    # Exact: jump from success to success with geometric gaps, about n*p steps.
    log_q = math.log1p(-p)
    k, i = 0, 0
    while True:
        i += int(math.log(1.0 - rng.random()) / log_q) + 1
        if i > n:
            return k
        k += 1


def lognormal_mean(rng: random.Random, mean: float, spread: float) -> float:
    """A lognormal draw with the given mean (not median) and sigma = spread."""
    if mean <= 0:
        return 0.0
    return rng.lognormvariate(math.log(mean) - spread * spread / 2, spread)
