"""Four ranks all-reduce a small array over the rendezvous address.

    shipyard launch examples/allreduce/experiment.py     # on this machine
    shipyard render examples/allreduce/experiment.py     # the pods it becomes
"""

from shipyard import Experiment, Resources, RetryPolicy, Role

experiment = Experiment(
    name="allreduce",
    queue="default",
    roles=[
        Role(
            name="worker",
            replicas=4,
            machine_type="cpu-small",
            # A quarter of a core each, so four ranks fit on a two-core laptop or CI box.
            resources=Resources(cpu="250m", memory="256Mi"),
            command=["python", "allreduce.py"],
        )
    ],
    retry=RetryPolicy(max_restarts=1, backoff_seconds=2),
    time_limit="10m",
)
