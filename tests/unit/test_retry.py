import random

from orchestrator.retry import RetryPolicy


def test_backoff_grows_exponentially_with_full_jitter_up_to_the_cap() -> None:
    policy = RetryPolicy(max_attempts=8, base_s=1.0, cap_s=10.0)
    rng = random.Random(3)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (8, 10.0)]:
        delays = [policy.delay_s(attempt, rng) for _ in range(500)]
        assert min(delays) >= 0 and max(delays) <= ceiling
        assert max(delays) > 0.8 * ceiling  # spread over the whole range, not a fixed step
        assert len(set(delays)) > 400


def test_gives_up_after_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert not policy.gives_up(2)
    assert policy.gives_up(3)
