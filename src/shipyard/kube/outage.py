"""Backing off while the API server fails, and saying so once.

An outage begins with the first failure after a success and ends with the next
success. Meanwhile callers wait `wait_s()` before each attempt: exponential backoff
(doubling from `base_s` to `cap_s`) with full jitter, grown at most once per window so
that a hundred requests failing together count as one step, not a hundred. The log
gets one line when an outage begins and one when it ends, however many requests fail.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

log = logging.getLogger(__name__)
# A failure this soon after a recovery continues the outage, silently: an API server
# starting up answers some requests and refuses others for a few seconds.
RELAPSE_S = 10.0


class Outage:
    def __init__(self, what: str, *, base_s: float = 0.2, cap_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic,
                 jitter: Callable[[], float] = random.random,
                 logger: logging.Logger = log) -> None:
        self.what, self.base_s, self.cap_s = what, base_s, cap_s
        self.clock, self.jitter, self.log = clock, jitter, logger
        self.began: float | None = None  # when the current outage began; None: healthy
        self.failures = 0  # failed attempts in the current outage
        self.outages = 0  # outages seen, ever
        self._delay = 0.0
        self._next_at = 0.0
        self._ended: float | None = None  # when the last outage ended
        self._told_recovered = False

    @property
    def failing(self) -> bool:
        return self.began is not None

    def wait_s(self) -> float:
        """Seconds to wait before the next attempt (0 while healthy)."""
        return max(0.0, self._next_at - self.clock()) if self.failing else 0.0

    def failed(self, exc: BaseException) -> float:
        """Record a failed attempt; returns the seconds to wait before the next one."""
        now = self.clock()
        self.failures += 1
        if self.began is None and self._ended is not None and now - self._ended < RELAPSE_S:
            self.began = self._ended  # a relapse (a server still starting): the same outage
            self._delay = self.base_s
        elif self.began is None:
            self.began, self.outages = now, self.outages + 1
            self._delay, self._told_recovered = self.base_s, False
            self.log.warning("%s: failing (%s); backing off up to %gs, quiet until it recovers",
                             self.what, exc, self.cap_s)
        elif now >= self._next_at:
            self._delay = min(self._delay * 2, self.cap_s)
        else:
            return self._next_at - now  # failed within the current window: same step
        # Full jitter, with a floor of half the delay so retries never bunch at zero.
        self._next_at = now + self._delay * (0.5 + 0.5 * self.jitter())
        return self._next_at - now

    def succeeded(self) -> None:
        if self.began is None:
            return
        now = self.clock()
        level = logging.DEBUG if self._told_recovered else logging.INFO
        self.log.log(level, "%s: recovered after %.1fs (%d failed attempts)", self.what,
                     now - self.began, self.failures)
        self._told_recovered = True
        self.began, self._ended, self._delay, self._next_at = None, now, 0.0, 0.0
        self.failures = 0
