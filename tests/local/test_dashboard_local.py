"""`shipyard dashboard` over the local backend, in Debian's Chromium: a scripted
scenario (a failed gang, a running one blocking the machine, one waiting behind it)
shows in the table; phases change without a reload; the filters and the search narrow
the table; the failed experiment's page highlights the rank that failed first."""

from __future__ import annotations

import re

import pytest

from shipyard.local import launch
from shipyard.local.backend import cancel
from shipyard.local.store import Store
from shipyard.spec import RetryPolicy
from tests.dashboard_harness import assert_not_reloaded, chromium, dashboard, mark_page, shot

from .conftest import script_experiment, wait_for

CRASH = """
import os, sys, time
rank = int(os.environ["RANK"])
print(f"rank {rank} starting", flush=True)
if rank == 1:
    time.sleep(0.3)
    print("CUDA error: an illegal memory access", flush=True)
    sys.exit(3)
time.sleep(60)
"""
GATED = """
import os, pathlib, time, shipyard
gate = pathlib.Path(os.environ["GATE"])
step = 0
while not gate.exists():
    step += 1
    shipyard.progress(min(step, 99), total_steps=100, loss=1.0 / step)
    time.sleep(0.1)
"""


@pytest.fixture
def scenario(tmp_path, monkeypatch):
    """crashy: Failed (worker-1 exit 3); blocker: Running, holding the machine's one CPU
    until the gate file appears; waiter: Queued behind it (queue team-b)."""
    monkeypatch.setenv("SHIPYARD_LOCAL_CPUS", "1")
    store = Store()
    gate = tmp_path / "gate"
    crashy = launch(script_experiment("crashy", CRASH, replicas=3), tmp_path / "crashy.py", store=store)
    assert crashy.phase == "Failed"
    blocker = script_experiment("blocker", GATED, replicas=1, cpu="1")
    role = blocker.roles[0].model_copy(update={"env": {"GATE": str(gate), "SHIPYARD_PROGRESS_INTERVAL": "0.1"}})
    blocker = blocker.model_copy(update={"roles": [role]})
    waiter = script_experiment("waiter", "print('done')", replicas=1, cpu="500m", queue="team-b",
                               retry=RetryPolicy(max_restarts=0))
    runs = [launch(blocker, tmp_path / "blocker.py", detach=True, store=store)]
    wait_for(store, runs[0].id, lambda s: s.phase == "Running")
    runs.append(launch(waiter, tmp_path / "waiter.py", detach=True, store=store))
    wait_for(store, runs[1].id, lambda s: s.phase == "Queued" and s.position == 1)
    yield store, gate, {"crashy": crashy.id, "blocker": runs[0].id, "waiter": runs[1].id}
    for run in runs:
        cancel(run.id, store=store)


def test_local_dashboard_in_a_browser(scenario, shipyard_home, tmp_path, monkeypatch):
    store, gate, ids = scenario
    env = {"SHIPYARD_HOME": str(shipyard_home), "SHIPYARD_CLUSTERS": str(tmp_path / "none.yaml")}
    with dashboard(env) as url, chromium(tmp_path / "profile") as browser:
        page = browser.new_page()
        page.goto(url + "/")
        row = {name: page.locator(f"tr[data-key='local/-/{run}']") for name, run in ids.items()}
        for name, phase in (("crashy", "Failed"), ("blocker", "Running"), ("waiter", "Queued")):
            assert row[name].locator(".phase").inner_text() == phase
        waiting = row["waiter"].locator("td").nth(6).inner_text(), row["waiter"].locator(".reason").inner_text()
        # The position and the waiting reason in words, as `shipyard status` says them.
        assert waiting == ("1", store.load(ids["waiter"]).message), waiting
        assert "0 such nodes free; position 1 in queue team-b" in waiting[1]
        assert row["waiter"].locator("td").nth(3).inner_text() == "team-b"
        # The blocker reports progress: its bar and ETA appear, live.
        page.wait_for_function(f"document.querySelector(\"tr[data-key='local/-/{ids['blocker']}'] td.progress\")"
                               ".innerText.includes('%')")
        shot(page, "local-experiments")

        mark_page(page)
        gate.write_text("go")  # the blocker ends; the waiter starts, then ends
        for name in ("blocker", "waiter"):
            page.wait_for_function(f"document.querySelector(\"tr[data-key='local/-/{ids[name]}'] .phase\")"
                                   "?.innerText === 'Succeeded'", timeout=30_000)
        assert_not_reloaded(page)
        wait_for(store, ids["waiter"], lambda s: s.phase == "Succeeded")

        only = "document.querySelectorAll('#rows tr').length === 1 && " \
               "document.querySelector('#rows tr').dataset.key === '{}'"
        page.select_option("select[name=phase]", "Failed")
        page.wait_for_function(only.format(f"local/-/{ids['crashy']}"))
        assert "phase=Failed" in page.url
        page.select_option("select[name=phase]", "")
        page.fill("input[name=search]", "team-b")
        page.wait_for_function(only.format(f"local/-/{ids['waiter']}"))
        page.wait_for_timeout(1000)  # a late row of the old filters would show here
        assert page.locator("#rows tr").count() == 1
        assert_not_reloaded(page)
        assert page.locator("#total").inner_text() == "1"

        page.goto(f"{url}/experiments/local/-/{ids['crashy']}")
        assert page.locator("#failure").inner_text() == "rank worker-1 failed first: exited with code 3"
        failed = page.locator("tr.failed-first")
        assert failed.count() == 1 and failed.get_attribute("data-rank") == "worker-1"
        assert failed.locator("td").nth(3).inner_text() == "3"
        log = page.locator("details#log-worker-1")
        assert "failed-first" in (log.get_attribute("class") or "") and log.get_attribute("open") is not None
        assert "CUDA error: an illegal memory access" in log.locator("pre").inner_text()
        assert re.search(r"Failed", page.locator(".timeline").inner_text())
        shot(page, "local-failed-experiment")

        page.goto(f"{url}/experiments/local/-/{ids['blocker']}")
        page.wait_for_selector("#progress-chart canvas")  # uPlot drew the progress history
        shot(page, "local-progress")
