"""The writer's pod budget: gangs start whole in arrival order, within the budget
unless alone, and every gang gets its turn."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from shipyard.controller.writer import PodBudget


@settings(max_examples=60, deadline=None)
@given(limit=st.integers(1, 64), sizes=st.lists(st.integers(1, 200), min_size=1, max_size=30),
       holds=st.lists(st.integers(0, 3), min_size=30, max_size=30))
def test_budget_is_never_overdrawn_and_serves_in_order(limit: int, sizes: list[int],
                                                       holds: list[int]) -> None:
    started: list[int] = []

    async def scenario() -> None:
        budget = PodBudget(limit)
        live: list[int] = []

        async def gang(i: int, n: int) -> None:
            await budget.acquire(n)
            # Within the budget, or the only gang being written.
            assert budget.used <= limit or live == []
            live.append(n)
            started.append(i)
            for _ in range(holds[i]):
                await asyncio.sleep(0)
            live.remove(n)
            budget.release(n)

        await asyncio.wait_for(asyncio.gather(*(gang(i, n) for i, n in enumerate(sizes))), 10)
        assert budget.used == 0

    asyncio.run(scenario())
    assert started == list(range(len(sizes)))  # first come, first served: no gang overtaken


def test_a_cancelled_waiter_lets_the_next_one_in() -> None:
    async def scenario() -> list[str]:
        budget = PodBudget(4)
        order: list[str] = []
        await budget.acquire(3)
        big = asyncio.create_task(budget.acquire(4))  # waits: 3 + 4 > 4
        small = asyncio.create_task(budget.acquire(1))  # behind it, though it would fit
        await asyncio.sleep(0)
        assert not small.done()
        big.cancel()
        await asyncio.sleep(0)
        await asyncio.wait_for(small, 1)
        order.append("small")
        assert budget.used == 4
        return order

    assert asyncio.run(scenario()) == ["small"]
