"""`shipyard dashboard -c CTX` on a dev cluster with the controller, in Debian's Chromium:
a scripted scenario (one gang running, one failed, one waiting behind the first) shows
in the table with the waiting reason and position the controller wrote; cancelling the
running gang turns it Cancelled and starts the waiting one, without a reload; the
failed experiment's page highlights its failed rank with the exit code and its events;
the queues and clusters pages show the queue's usage and every node."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from shipyard.dev.stages import EXIT_CODE, FAIL_AFTER
from tests import dashboard_harness as browser_harness
from tests.integration import controller_harness as harness

GPU_NODES = 4


@pytest.fixture(scope="module")
def cluster(dev_cluster_factory) -> Iterator[Any]:
    c = dev_cluster_factory("dash", (f"gpu-a100:{GPU_NODES}", "cpu-small:1"))
    with harness.controller_running(c, "--no-leader-elect"):
        yield c


def test_cluster_dashboard_in_a_browser(cluster, tmp_path):
    with harness.experiment_namespace(cluster, "test_dashboard") as api:
        api.launch(harness.gpu_job("fits", 2))
        api.wait("fits", lambda s: s.get("phase") == "Running")
        api.launch(harness.gpu_job("crash", 1, annotations={FAIL_AFTER: "1s", EXIT_CODE: "3"}))
        api.wait("crash", lambda s: s.get("phase") == "Failed", timeout=90)
        api.launch(harness.gpu_job("waits", 3))
        waiting = api.wait("waits", lambda s: s.get("phase") == "Queued" and s.get("position"))

        env = {"KUBECONFIG": str(cluster.kubeconfig), "SHIPYARD_HOME": str(tmp_path / "home"),
               "SHIPYARD_CLUSTERS": str(tmp_path / "none.yaml")}
        spec = tmp_path / "next.yaml"  # the clusters page explains where it would go
        spec.write_text(yaml.safe_dump(harness.gpu_job("next", 1).model_dump(mode="json", exclude_defaults=True)))
        with browser_harness.dashboard(env, "-c", cluster.context, "--no-local", "--explain", str(spec)) as url, \
                browser_harness.chromium(tmp_path / "profile") as browser:
            page = browser.new_page()
            page.goto(f"{url}/?namespace={api.ns}")
            name = page.locator("header .source").inner_text()
            key = {e: f"{name}/{api.ns}/{e}" for e in ("fits", "crash", "waits")}
            row = {e: page.locator(f"tr[data-key='{k}']") for e, k in key.items()}
            for e in ("fits", "crash", "waits"):
                row[e].wait_for()
            assert row["fits"].locator(".phase").inner_text() == "Running"
            assert row["crash"].locator(".phase").inner_text() == "Failed"
            assert row["waits"].locator(".phase").inner_text() == "Queued"
            # Position and the waiting reason, as the controller wrote them.
            # (waited for: the controller may rewrite them while the page loads)
            status = api.status("waits")
            page.wait_for_function(
                f"(r) => r.querySelector('td.reason').innerText.startsWith({json.dumps(status['message'])})"
                f" && r.querySelectorAll('td')[6].innerText === '{status['position']}'",
                arg=row["waits"].element_handle())
            assert waiting["message"] and "0 such nodes free" in status["message"]
            browser_harness.shot(page, "cluster-experiments")

            browser_harness.mark_page(page)
            api.custom.patch_namespaced_custom_object(
                harness.GROUP, harness.VERSION, api.ns, "experiments", "fits",
                {"metadata": {"annotations": {"shipyard.dev/cancel-requested": "true"}}})
            for e, phase in (("fits", "Cancelled"), ("waits", "Running")):
                page.wait_for_function(f"document.querySelector(\"tr[data-key='{key[e]}'] .phase\")"
                                       f"?.innerText === '{phase}'", timeout=60_000)
            browser_harness.assert_not_reloaded(page)

            page.select_option("select[name=phase]", "Failed")
            page.wait_for_function("document.querySelectorAll('#rows tr').length === 1 && "
                                   f"document.querySelector('#rows tr').dataset.key === '{key['crash']}'")
            browser_harness.assert_not_reloaded(page)

            page.goto(f"{url}/experiments/{name}/{api.ns}/crash")
            failed = page.locator("tr.failed-first")
            assert failed.count() == 1 and failed.get_attribute("data-rank") == "trainer-0"
            assert failed.locator("td").nth(3).inner_text() == "3"
            assert failed.locator("td").nth(2).inner_text() == api.pods("crash")[0].spec.node_name
            assert page.locator("#failure").inner_text().startswith("rank trainer-0 failed first: exited with code 3")
            assert "Admitted" in page.locator(".timeline").inner_text()  # the controller's Events
            browser_harness.shot(page, "cluster-failed-experiment")

            api.wait_no_pods("fits")  # a terminating pod still holds its node
            page.goto(f"{url}/queues")
            queue = page.locator("#queues tr[data-queue='default']")
            queue.wait_for()
            assert "24 GPU" in queue.locator("td").nth(2).inner_text()  # waits: 3 whole 8-GPU nodes
            browser_harness.shot(page, "cluster-queues")

            page.goto(f"{url}/clusters")
            page.locator(".nodemap .node").first.wait_for()
            assert page.locator(".nodemap .node").count() == GPU_NODES + 1
            assert page.locator(".nodemap .node.a5").count() == 3  # the three nodes `waits` holds
            # The controller's capacity summary catches up with the freed node (the page follows it).
            page.wait_for_function("document.querySelector('#explain tr.chosen td:nth-child(2)')"
                                   "?.innerText === '0 fits now'", timeout=60_000)
            assert page.locator("#explain tr.chosen td").first.inner_text() == name
            browser_harness.shot(page, "cluster-nodes")
