"""Kubeconfig files for a dev cluster: its own file, and a context merged into the user's."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import yaml


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def build(context: str, server: str, certs: Path, client: str = "admin") -> dict[str, Any]:
    """A self-contained kubeconfig (certificates embedded) with one context."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": context,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": _b64(certs / "ca.crt"),
                },
            }
        ],
        "users": [
            {
                "name": context,
                "user": {
                    "client-certificate-data": _b64(certs / f"{client}.crt"),
                    "client-key-data": _b64(certs / f"{client}.key"),
                },
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        "current-context": context,
    }


def write(path: Path, config: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)


def user_kubeconfig_path() -> Path:
    """The first file of $KUBECONFIG, else ~/.kube/config (what kubectl writes to)."""
    env = os.environ.get("KUBECONFIG")
    if env:
        return Path(env.split(os.pathsep)[0])
    return Path.home() / ".kube" / "config"


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [], "contexts": []}
    data = yaml.safe_load(path.read_text()) or {}
    for k in ("clusters", "users", "contexts"):
        data[k] = data.get(k) or []
    return data


def merge(path: Path, config: dict[str, Any], set_current: bool = True) -> None:
    """Add (or replace) the entries of `config` in the kubeconfig at `path`."""
    data = _load(path)
    for k in ("clusters", "users", "contexts"):
        names = {e["name"] for e in config[k]}
        data[k] = [e for e in data[k] if e.get("name") not in names] + config[k]
    if set_current:
        data["current-context"] = config["current-context"]
    write(path, data)


def remove(path: Path, context: str) -> None:
    """Drop the cluster, user and context named `context` from `path`, if there."""
    if not path.is_file():
        return
    data = _load(path)
    before = sum(len(data[k]) for k in ("clusters", "users", "contexts"))
    for k in ("clusters", "users", "contexts"):
        data[k] = [e for e in data[k] if e.get("name") != context]
    if sum(len(data[k]) for k in ("clusters", "users", "contexts")) == before:
        return
    if data.get("current-context") == context:
        data["current-context"] = ""
    write(path, data)
