"""The Cluster API CRDs, for testing the clusterapi node provider without a cloud.

The CRD manifests ship in the `sigs.k8s.io/cluster-api` Go module (under
`core/config/crd/bases/` since v1.11, `config/crd/bases/` before), so they are
fetched the way the control plane is: `go mod download` from the Go module proxy,
then copied into `<cache>/capi/<version>/` with a `complete` marker written last.
No Cluster API controller runs: tests check what shipyard writes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from shipyard.dev.build import BuildError, Log, _go, cache_root

CAPI_MODULE = "sigs.k8s.io/cluster-api"
CAPI_VERSION = "v1.14.2"  # serves v1beta2 (storage) and v1beta1 (deprecated)
# What the clusterapi provider reads and writes; MachineSet for realism (it owns Machines).
DEFAULT_KINDS = ("machinedeployments", "machinesets", "machines")
_BASES = ("core/config/crd/bases", "config/crd/bases")


def capi_version() -> str:
    return os.environ.get("SHIPYARD_CAPI_VERSION", CAPI_VERSION)


def capi_crds(version: str | None = None, *, log: Log = lambda _: None) -> list[Path]:
    """Every CRD manifest of the pinned Cluster API release, cached; Go runs only on a miss."""
    v = version or capi_version()
    out = cache_root() / "capi" / v
    if (out / "complete").is_file():
        return sorted(out.glob("*.yaml"))
    if shutil.which("go") is None:
        raise BuildError("`go` is not on PATH; it fetches the Cluster API CRDs from the Go module proxy")
    with tempfile.TemporaryDirectory(prefix="shipyard-capi-") as work:
        info = json.loads(_go(["mod", "download", "-json", f"{CAPI_MODULE}@{v}"], Path(work),
                              "fetch cluster-api", log))
    if info.get("Error"):
        raise BuildError(f"fetch {CAPI_MODULE}@{v}: {info['Error']}")
    src = next((Path(info["Dir"]) / b for b in _BASES if (Path(info["Dir"]) / b).is_dir()), None)
    if src is None:
        raise BuildError(f"{CAPI_MODULE}@{v} has no CRD directory (looked in {', '.join(_BASES)})")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in sorted(src.glob("*.yaml")):
        shutil.copyfile(f, tmp / f.name)  # the module cache is read-only; copies are not
    (tmp / "complete").write_text(f"{CAPI_MODULE}@{v}\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return sorted(out.glob("*.yaml"))


def capi_crd_objects(kinds: tuple[str, ...] = DEFAULT_KINDS, version: str | None = None
                     ) -> list[dict[str, Any]]:
    """The CRD objects for `kinds` (plurals of group cluster.x-k8s.io), ready to apply."""
    files = {f.name: f for f in capi_crds(version)}
    objects = []
    for plural in kinds:
        name = f"cluster.x-k8s.io_{plural}.yaml"
        if name not in files:
            raise BuildError(f"no CRD {name} in {CAPI_MODULE}@{version or capi_version()}")
        objects.append(yaml.safe_load(files[name].read_text()))
    return objects
