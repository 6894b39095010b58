"""Spec -> Kubernetes objects and the distributed-training environment."""

from shipyard.render.env import pod_name, rank_layout, replica_env
from shipyard.render.objects import render_experiment, render_pod, render_service

__all__ = ["pod_name", "rank_layout", "render_experiment", "render_pod", "render_service", "replica_env"]
