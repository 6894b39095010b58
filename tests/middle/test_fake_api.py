"""The in-memory API keeps the semantics the middle tests rely on, and the real Informer
follows it as it follows an API server (including a relist after 410 Gone)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shipyard.kube.errors import AlreadyExists, Conflict, NotFound
from shipyard.kube.informer import Informer
from shipyard.kube.resources import CONFIG_MAPS, EXPERIMENTS, NAMESPACES
from tests.middle.fake_api import FakeApi, label_match


async def api_with_namespace() -> FakeApi:
    api = FakeApi()
    await api.create(NAMESPACES, {"metadata": {"name": "ns"}})
    return api


def cm(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "labels": labels}, "data": {"k": "v"}}


def test_versions_conflicts_and_missing_objects() -> None:
    async def main() -> None:
        api = FakeApi()
        with pytest.raises(NotFound, match="namespaces"):
            await api.create(CONFIG_MAPS, cm("a"))
        await api.create(NAMESPACES, {"metadata": {"name": "ns"}})
        first = await api.create(CONFIG_MAPS, cm("a"))
        with pytest.raises(AlreadyExists):
            await api.create(CONFIG_MAPS, cm("a"))
        second = await api.patch(CONFIG_MAPS, "a", {"data": {"k": "w"}}, "ns")
        assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
        with pytest.raises(Conflict):
            await api.replace(CONFIG_MAPS, first)  # written from a stale read
        same = await api.patch(CONFIG_MAPS, "a", {"data": {"k": "w"}}, "ns")
        assert same["metadata"]["resourceVersion"] == second["metadata"]["resourceVersion"]
        await api.delete(CONFIG_MAPS, "a", "ns")
        with pytest.raises(NotFound):
            await api.delete(CONFIG_MAPS, "a", "ns", missing_ok=False)

    asyncio.run(main())


def test_the_status_subresource_and_merge_patch_nulls() -> None:
    async def main() -> None:
        api = await api_with_namespace()
        body = {"metadata": {"name": "e", "namespace": "ns"}, "spec": {"x": 1}, "status": {"phase": "Ignored"}}
        created = await api.create(EXPERIMENTS, body)
        assert "status" not in created
        await api.patch(EXPERIMENTS, "e", {"status": {"phase": "Queued", "placement": {"w-0": "n1"}}},
                        "ns", subresource="status")
        await api.patch(EXPERIMENTS, "e", {"spec": {"x": 2}, "status": {"phase": "Lost"}}, "ns")
        obj = await api.patch(EXPERIMENTS, "e", {"status": {"placement": None}}, "ns", subresource="status")
        assert obj["spec"] == {"x": 2} and obj["status"] == {"phase": "Queued"}

    asyncio.run(main())


def test_selectors() -> None:
    labels = {"app": "x", "tier": "db"}
    assert label_match("app=x,tier in (db, web)", labels)
    assert label_match("app,!missing,tier!=web", labels)
    assert not label_match("app=y", labels)
    assert not label_match("tier notin (db)", labels)


def test_the_informer_follows_watches_and_lists_again_after_gone() -> None:
    async def main() -> None:
        api = await api_with_namespace()
        await api.create(CONFIG_MAPS, cm("keep", app="x"))
        await api.create(CONFIG_MAPS, cm("other", app="y"))
        seen: list[tuple[str, bool, bool]] = []
        informer: Informer[dict[str, Any]] = Informer(
            api, CONFIG_MAPS, lambda o: o["data"], lambda k, old, new: seen.append((k, old is None, new is None)),
            label_selector="app=x")
        task = asyncio.create_task(informer.run())
        await asyncio.wait_for(informer.synced.wait(), 5)
        assert set(informer.items) == {"ns/keep"}
        await api.create(CONFIG_MAPS, cm("late", app="x"))
        await asyncio.sleep(0)
        assert set(informer.items) == {"ns/keep", "ns/late"}
        # The watch ends and the history is compacted meanwhile: a deletion it missed is
        # only found by listing again, which the informer must do on 410.
        api.end_watches()
        await api.delete(CONFIG_MAPS, "late", "ns")
        api.compact()
        for _ in range(50):
            await asyncio.sleep(0)
        assert informer.relists == 1
        assert set(informer.items) == {"ns/keep"}
        assert seen[-1] == ("ns/late", False, True)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
