"""kwok configuration: the Stages that play kubelet for simulated nodes and pods.

The knobs tests and benchmarks turn, all plain annotations on the object:

Pods (bound to a kwok node; they become Running at once):
- `shipyard.dev/train-duration: "30s"`: Succeeded (exit code 0) that long after Running.
- `shipyard.dev/fail-after: "10s"` (+ optional `shipyard.dev/exit-code: "137"`,
  default 1): Failed with that exit code that long after Running.
- neither: Running until deleted (a long training job).

Nodes:
- `shipyard.dev/not-ready: "<message>"` (+ optional `shipyard.dev/not-ready-reason`):
  the node's Ready condition turns False; remove the annotation and it recovers.
- deleting the Node object removes it; kwok stops playing it.

Durations are Go durations ("90s", "1h30m") or an RFC 3339 time.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

TRAIN_DURATION = "shipyard.dev/train-duration"
FAIL_AFTER = "shipyard.dev/fail-after"
EXIT_CODE = "shipyard.dev/exit-code"
NOT_READY = "shipyard.dev/not-ready"
NOT_READY_REASON = "shipyard.dev/not-ready-reason"

# kwok plays only nodes carrying this annotation, so real nodes are never touched.
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")


@dataclass(frozen=True)
class KwokOptions:
    """What kwok needs tuned to play thousands of nodes on a small machine."""

    # Leases are renewed every quarter of this; the node-lifecycle controller's
    # grace period must exceed the renew interval (see cluster.Tuning).
    node_lease_duration_seconds: int = 400
    node_play_stage_parallelism: int = 16
    pod_play_stage_parallelism: int = 16
    node_lease_parallelism: int = 8
    # Pod IPs come from here; kwok's default /24 runs out after 254 pods.
    cidr: str = "10.64.0.1/12"


def stage_documents() -> list[dict[str, Any]]:
    text = resources.files("shipyard.dev").joinpath("stages.yaml").read_text()
    return [d for d in yaml.safe_load_all(text) if d]


def kwok_config(options: KwokOptions, server_address: str) -> str:
    """The multi-document file passed to `kwok --config`."""
    conf = {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokConfiguration",
        "options": {
            "cidr": options.cidr,
            "nodeIP": "10.0.0.1",
            "manageAllNodes": False,
            "manageNodesWithAnnotationSelector": "=".join(KWOK_NODE_ANNOTATION),
            "serverAddress": server_address,
            "nodeLeaseDurationSeconds": options.node_lease_duration_seconds,
            "nodeLeaseParallelism": options.node_lease_parallelism,
            "nodePlayStageParallelism": options.node_play_stage_parallelism,
            "podPlayStageParallelism": options.pod_play_stage_parallelism,
            "enablePodsOnNodeSyncListPager": True,
            "enablePodsOnNodeSyncStreamWatch": False,
        },
    }
    return yaml.safe_dump_all([conf, *stage_documents()], sort_keys=False)
