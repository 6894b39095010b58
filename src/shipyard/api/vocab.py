"""An experiment's phases and their groups, and every label, annotation and taint key
shipyard writes or reads, each defined once.

`Phase` is a `StrEnum`: a member is the very string stored in `status.phase` (and in a
local run's status.json), so it compares, hashes, formats and serializes as that string.
"""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    QUEUED = "Queued"
    ADMITTED = "Admitted"  # placement decided, pods being created (cluster only)
    STARTING = "Starting"  # every pod created / every local rank being started
    RUNNING = "Running"
    RESTARTING = "Restarting"  # stopped for a failure: pods going, then the backoff
    PREEMPTED = "Preempted"  # stopped for a more important gang (cluster only)
    HOLDING = "Holding"  # the hold annotation: pods being deleted (cluster only)
    HELD = "Held"  # the hold annotation: no pod left, kept out of scheduling
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


# Finished for good: nothing of it runs again.
TERMINAL = (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED)
# Its gang holds resources: on a cluster its placement's nodes, on this machine its CPUs
# and GPUs. (The local backend has no Admitted: it goes from Queued to Starting.)
HOLDING = (Phase.ADMITTED, Phase.STARTING, Phase.RUNNING)
# Pods being deleted before the gang is queued again.
STOPPING = (Phase.RESTARTING, Phase.PREEMPTED)
# Stopped by the hold annotation: pods going (Holding), then none (Held).
HELD = (Phase.HOLDING, Phase.HELD)
# Phases in which shipyard itself deletes the experiment's pods.
DELETING = (*STOPPING, *HELD, *TERMINAL)
# Not finished: a local run's supervisor is still at work on it.
ACTIVE = tuple(p for p in Phase if p not in TERMINAL)

# -- keys: labels and annotations on experiments and pods ---------------------------
LABEL_EXPERIMENT = "shipyard.dev/experiment"
LABEL_ROLE = "shipyard.dev/role"
LABEL_INDEX = "shipyard.dev/replica-index"
LABEL_QUEUE = "shipyard.dev/queue"
LABEL_ATTEMPT = "shipyard.dev/attempt"
ANNOTATION_RANK = "shipyard.dev/node-rank"
# Why a pod is being stopped, set before its SIGTERM (the pod reads it from a file).
ANNOTATION_STOP_REASON = "shipyard.dev/stop-reason"
ANNOTATION_CANCEL = "shipyard.dev/cancel-requested"
# "true": stop the experiment (no pods) and keep it out of scheduling until removed;
# how `shipyard move` makes sure two clusters never run it at once.
ANNOTATION_HOLD = "shipyard.dev/hold"
ANNOTATION_MOVING_TO = "shipyard.dev/moving-to"
ANNOTATION_MOVED_FROM = "shipyard.dev/moved-from"

# -- keys: on nodes ----------------------------------------------------------------
# Every node a provider makes (or adopts) carries this label, value = pool name.
LABEL_NODEPOOL = "shipyard.dev/nodepool"
# Set on a node requested for one gang (value = gang key), so the scheduler can hold
# it for that gang rather than let a smaller job take it first.
ANNOTATION_EARMARK = "shipyard.dev/earmarked-for"
ANNOTATION_QUARANTINE_EVIDENCE = "shipyard.dev/quarantine-evidence"
# The experiments that failed on a node not (yet) quarantined, so a new leader goes on counting.
ANNOTATION_QUARANTINE_STRIKES = "shipyard.dev/quarantine-strikes"
# Topology domains, narrowest first (the default Policy.topology_keys).
LABEL_RACK = "topology.shipyard.dev/rack"
LABEL_BLOCK = "topology.shipyard.dev/block"
# A sick node, as a health agent says it (any effect).
TAINT_UNHEALTHY = "shipyard.dev/unhealthy"
# Set on a node taken out for repeated failures.
TAINT_QUARANTINE = "shipyard.dev/quarantined"
# Since when (epoch seconds) an idle node may go: the autoscaler's scale-down mark.
TAINT_CANDIDATE = "shipyard.dev/scale-down-candidate"
# Only in the scheduler's snapshot, never on the node: keeps other gangs off a node
# provisioned for a waiting one (the gang itself tolerates it).
TAINT_EARMARK = "shipyard.dev/earmarked"
# A new node takes no work until a check pod has succeeded on it (controller/preflight.py).
TAINT_PREFLIGHT = "shipyard.dev/preflight"

# -- keys: the dev cluster's nodes ---------------------------------------------------
LABEL_POOL = "shipyard.dev/pool"
# "real" (a kubelet in a network namespace; also a taint of this key) or "kwok".
LABEL_NODE_KIND = "shipyard.dev/node-kind"
