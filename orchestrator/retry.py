"""Retry policy as a value: how often a task may run again after a transient failure, and when."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_s: float = 1.0
    cap_s: float = 60.0

    def delay_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """Exponential backoff with full jitter: uniform in [0, min(cap, base·2^(attempt-1))].

        Jitter spreads retries of many tasks that failed together (a store outage) apart.
        """
        ceiling = min(self.cap_s, self.base_s * 2 ** max(0, attempt - 1))
        return (rng or random).uniform(0, ceiling)

    def gives_up(self, attempts: int) -> bool:
        return attempts >= self.max_attempts
