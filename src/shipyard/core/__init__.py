"""Pure policy over snapshots: no Kubernetes client, clock, socket or subprocess here."""
