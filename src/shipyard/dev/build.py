"""Build etcd, the Kubernetes control plane, kwok and kubectl (and, for real nodes,
kubelet, kube-proxy and CoreDNS; helm; prometheus and promtool) from the Go module
proxy, cached.

Binaries land in `<cache>/bin/<key>/` where the key names every pinned version and
the platform (the node binaries in a directory of their own, so adding them never
invalidates a control-plane build); a complete directory carries a `manifest.json` written last, so a
second run finds it and builds nothing. Nothing is fetched from anywhere but the
Go module proxy (`go mod download`).

Run as `python -m shipyard.dev.build` or `shipyard dev build`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from shipyard.dev import gomod

KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.8.0"
COREDNS_VERSION = "v1.15.0"
HELM_VERSION = "v3.22.0"
# The Go module v0.316.0 is Prometheus v3.16.0 (the module is tagged v0.<minor>.<patch>).
# Built without the `builtinassets` tag, its web UI is served from disk and never
# needs npm; the HTTP API, rule evaluation and promtool are all there.
PROMETHEUS_VERSION = "v0.316.0"

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
NODE_BINARIES = ("kubelet", "kube-proxy", "coredns")
TOOL_BINARIES = ("helm",)  # for the Helm chart's tests
KUBECTL_BINARIES = ("kubectl",)  # for the docs' commands: a fresh machine has none
MONITORING_BINARIES = ("prometheus", "promtool")  # for the monitoring tests
_SETS = {"controlplane": ("etcd", "kubernetes", "kwok"), "node": ("kubernetes-node", "coredns"),
         "tools": ("helm",), "monitoring": ("prometheus",), "kubectl": ("kubernetes-kubectl",)}
_CONTROLPLANE_CMDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
_NODE_CMDS = ("kubelet", "kube-proxy")
_KUBECTL_CMDS = ("kubectl",)


class BuildError(RuntimeError):
    """A build step failed; the message names the step and carries go's output."""


@dataclass(frozen=True)
class Versions:
    kubernetes: str = KUBERNETES_VERSION
    etcd: str = ETCD_VERSION
    kwok: str = KWOK_VERSION
    coredns: str = COREDNS_VERSION
    helm: str = HELM_VERSION
    prometheus: str = PROMETHEUS_VERSION

    @classmethod
    def from_env(cls) -> Versions:
        # Overrides exist so a neighbouring release can be tried without editing code.
        return cls(
            kubernetes=os.environ.get("SHIPYARD_KUBERNETES_VERSION", KUBERNETES_VERSION),
            etcd=os.environ.get("SHIPYARD_ETCD_VERSION", ETCD_VERSION),
            kwok=os.environ.get("SHIPYARD_KWOK_VERSION", KWOK_VERSION),
            coredns=os.environ.get("SHIPYARD_COREDNS_VERSION", COREDNS_VERSION),
            helm=os.environ.get("SHIPYARD_HELM_VERSION", HELM_VERSION),
            prometheus=os.environ.get("SHIPYARD_PROMETHEUS_VERSION", PROMETHEUS_VERSION),
        )

    def key(self) -> str:
        return f"k8s-{self.kubernetes}_etcd-{self.etcd}_kwok-{self.kwok}_{_platform()}"

    def node_key(self) -> str:
        return f"node_k8s-{self.kubernetes}_coredns-{self.coredns}_{_platform()}"

    def tools_key(self) -> str:
        return f"tools_helm-{self.helm}_{_platform()}"

    def monitoring_key(self) -> str:
        return f"monitoring_prometheus-{self.prometheus}_{_platform()}"

    def kubectl_key(self) -> str:
        # A directory of its own: adding kubectl invalidates no other cached build.
        return f"kubectl_k8s-{self.kubernetes}_{_platform()}"


def _platform() -> str:
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return f"{sys.platform}-{arch}"


def cache_root() -> Path:
    env = os.environ.get("SHIPYARD_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "shipyard"


def bin_dir(versions: Versions | None = None) -> Path:
    return cache_root() / "bin" / (versions or Versions.from_env()).key()


def node_bin_dir(versions: Versions | None = None) -> Path:
    return cache_root() / "bin" / (versions or Versions.from_env()).node_key()


def tools_bin_dir(versions: Versions | None = None) -> Path:
    return cache_root() / "bin" / (versions or Versions.from_env()).tools_key()


def cached_tool_binaries(versions: Versions | None = None) -> dict[str, Path] | None:
    """helm of a complete cached build, or None."""
    return _complete(tools_bin_dir(versions), TOOL_BINARIES)


def monitoring_bin_dir(versions: Versions | None = None) -> Path:
    return cache_root() / "bin" / (versions or Versions.from_env()).monitoring_key()


def cached_monitoring_binaries(versions: Versions | None = None) -> dict[str, Path] | None:
    """prometheus and promtool of a complete cached build, or None."""
    return _complete(monitoring_bin_dir(versions), MONITORING_BINARIES)


def kubectl_bin_dir(versions: Versions | None = None) -> Path:
    return cache_root() / "bin" / (versions or Versions.from_env()).kubectl_key()


def cached_kubectl(versions: Versions | None = None) -> dict[str, Path] | None:
    """kubectl of a complete cached build, or None."""
    return _complete(kubectl_bin_dir(versions), KUBECTL_BINARIES)


def _complete(d: Path, names: tuple[str, ...]) -> dict[str, Path] | None:
    if not (d / "manifest.json").is_file():
        return None
    paths = {b: d / b for b in names}
    if not all(p.is_file() and os.access(p, os.X_OK) for p in paths.values()):
        return None
    return paths


def cached_binaries(versions: Versions | None = None) -> dict[str, Path] | None:
    """The binaries of a complete cached build, or None if it must be built."""
    return _complete(bin_dir(versions), BINARIES)


def cached_node_binaries(versions: Versions | None = None) -> dict[str, Path] | None:
    """kubelet, kube-proxy and coredns of a complete cached build, or None."""
    return _complete(node_bin_dir(versions), NODE_BINARIES)


def require_node_binaries(versions: Versions | None = None) -> dict[str, Path]:
    paths = cached_node_binaries(versions)
    if paths is None:
        raise BuildError(
            f"real-node binaries (kubelet, kube-proxy, coredns) are not built (looked in "
            f"{node_bin_dir(versions)}); run `shipyard dev build` first"
        )
    return paths


def require_binaries(versions: Versions | None = None) -> dict[str, Path]:
    paths = cached_binaries(versions)
    if paths is None:
        raise BuildError(
            f"control-plane binaries are not built (looked in {bin_dir(versions)}); "
            "run `shipyard dev build` (or `python -m shipyard.dev.build`) first"
        )
    return paths


def find_controlplane_dir() -> Path:
    """`dev/controlplane` of the source checkout, or a work dir in the cache."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "dev").is_dir():
            return parent / "dev" / "controlplane"
    return cache_root() / "controlplane"


@dataclass
class Target:
    """One wrapper module and the commands built from it."""

    name: str
    upstream: str
    version: str
    local_version: str
    packages: dict[str, str]  # binary name -> Go package path
    ldflags: list[str] = field(default_factory=list)
    # Every package the wrapper's tools.go pins: the control-plane and node builds
    # share the kubernetes wrapper, and neither may drop the other's commands.
    tools: tuple[str, ...] = ()


def targets(v: Versions) -> list[Target]:
    """The control-plane targets."""
    return [t for t in _all_targets(v) if t.name in _SETS["controlplane"]]


def node_targets(v: Versions) -> list[Target]:
    """kubelet and kube-proxy (from the kubernetes wrapper) and CoreDNS."""
    return [t for t in _all_targets(v) if t.name in _SETS["node"]]


def tool_targets(v: Versions) -> list[Target]:
    return [t for t in _all_targets(v) if t.name in _SETS["tools"]]


def monitoring_targets(v: Versions) -> list[Target]:
    return [t for t in _all_targets(v) if t.name in _SETS["monitoring"]]


def kubectl_targets(v: Versions) -> list[Target]:
    return [t for t in _all_targets(v) if t.name in _SETS["kubectl"]]


def _is_kubernetes(t: Target) -> bool:
    """A set built from the shared kubernetes wrapper module."""
    return t.name.startswith("kubernetes")


def _all_targets(v: Versions) -> list[Target]:
    _, minor, _patch = v.kubernetes.lstrip("v").split(".")
    kv = [
        f"-X {pkg}.{var}={val}"
        for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
        for var, val in (
            ("gitVersion", v.kubernetes),
            ("gitMajor", "1"),
            ("gitMinor", minor),
            ("gitTreeState", "clean"),
            ("buildDate", "1970-01-01T00:00:00Z"),
        )
    ]
    k8s_tools = tuple(f"k8s.io/kubernetes/cmd/{b}"
                      for b in (*_CONTROLPLANE_CMDS, *_NODE_CMDS, *_KUBECTL_CMDS))
    return [
        Target(
            name="etcd",
            upstream="go.etcd.io/etcd/server/v3",
            version=v.etcd,
            local_version=v.etcd,
            packages={"etcd": "go.etcd.io/etcd/server/v3"},
            ldflags=[f"-X go.etcd.io/etcd/api/v3/version.GitSHA={v.etcd}"],
        ),
        *(
            Target(
                name=name,
                upstream="k8s.io/kubernetes",
                version=v.kubernetes,
                local_version=gomod.kubernetes_staging_version(v.kubernetes),
                packages={b: f"k8s.io/kubernetes/cmd/{b}" for b in cmds},
                ldflags=kv,
                tools=k8s_tools,
            )
            for name, cmds in (("kubernetes", _CONTROLPLANE_CMDS), ("kubernetes-node", _NODE_CMDS),
                               ("kubernetes-kubectl", _KUBECTL_CMDS))
        ),
        Target(
            name="kwok",
            upstream="sigs.k8s.io/kwok",
            version=v.kwok,
            local_version=v.kwok,
            packages={"kwok": "sigs.k8s.io/kwok/cmd/kwok"},
            ldflags=[f"-X sigs.k8s.io/kwok/pkg/consts.Version={v.kwok}"],
        ),
        Target(
            name="coredns",
            upstream="github.com/coredns/coredns",
            version=v.coredns,
            local_version=v.coredns,
            packages={"coredns": "github.com/coredns/coredns"},
            ldflags=[f"-X github.com/coredns/coredns/coremain.GitCommit={v.coredns}"],
        ),
        Target(
            name="helm",
            upstream="helm.sh/helm/v3",
            version=v.helm,
            local_version=v.helm,
            packages={"helm": "helm.sh/helm/v3/cmd/helm"},
            ldflags=[f"-X helm.sh/helm/v3/internal/version.version={v.helm}"],
        ),
        Target(
            name="prometheus",
            upstream="github.com/prometheus/prometheus",
            version=v.prometheus,
            local_version=v.prometheus,
            packages={b: f"github.com/prometheus/prometheus/cmd/{b}" for b in MONITORING_BINARIES},
            ldflags=[f"-X github.com/prometheus/common/version.Version={_prometheus_release(v)}"],
        ),
    ]


def _prometheus_release(v: Versions) -> str:
    """v0.316.0 -> 3.16.0, the release the module tag stands for."""
    _, minor, patch = v.prometheus.lstrip("v").split(".")[:3]
    return f"{int(minor) // 100}.{int(minor) % 100}.{patch}"


Log = Callable[[str], None]


def _go(args: list[str], cwd: Path, step: str, log: Log) -> str:
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false -mod=mod"}
    # A go.mod asking for a newer toolchain must not silently download one unless
    # the caller allowed it through GOTOOLCHAIN.
    env.setdefault("GOTOOLCHAIN", "local")
    shown = " ".join(args) if len(args) < 8 else " ".join([*args[:6], "..."])
    log(f"{step}: go {shown}")
    proc = subprocess.run(
        ["go", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise BuildError(f"{step} failed (go {' '.join(args)}):\n{proc.stderr[-6000:]}")
    return proc.stdout


def upstream_gomod(t: Target, log: Log) -> str:
    # Outside any module, so a broken wrapper go.mod cannot get in the way.
    with tempfile.TemporaryDirectory(prefix="shipyard-gomod-") as work:
        out = _go(
            ["mod", "download", "-json", f"{t.upstream}@{t.version}"],
            Path(work),
            f"fetch {t.name}",
            log,
        )
    info = json.loads(out)
    if info.get("Error"):
        raise BuildError(f"fetch {t.upstream}@{t.version}: {info['Error']}")
    return Path(info["GoMod"]).read_text()


def write_wrapper(t: Target, cp_dir: Path, log: Log) -> Path:
    """(Re)generate dev/controlplane/<name>/ when the pinned version changed."""
    d = cp_dir / _wrapper_name(t)
    d.mkdir(parents=True, exist_ok=True)
    text = gomod.wrapper_gomod(
        module=f"shipyard.dev/controlplane/{_wrapper_name(t)}",
        upstream_module=t.upstream,
        upstream_version=t.version,
        upstream_gomod=upstream_gomod(t, log),
        local_version=t.local_version,
    )
    mod = d / "go.mod"
    if not mod.is_file() or mod.read_text() != text:
        mod.write_text(text)
        (d / "go.sum").unlink(missing_ok=True)  # stale for other versions
    tools = gomod.tools_go(sorted(t.tools or t.packages.values()))
    if not (d / "tools.go").is_file() or (d / "tools.go").read_text() != tools:
        (d / "tools.go").write_text(tools)
    return d


def _wrapper_name(t: Target) -> str:
    return "kubernetes" if _is_kubernetes(t) else t.name


def _cached_or_built(v: Versions | None, force: bool, log: Log, out_dir: Callable[..., Path],
                     cached: Callable[..., object], tgts: Callable[[Versions], list[Target]]
                     ) -> Path:
    v = v or Versions.from_env()
    if not force and cached(v) is not None:
        log(f"cached: {out_dir(v)}")
        return out_dir(v)
    return _build_set(v, tgts(v), out_dir(v), log, replace=force)


def build(versions: Versions | None = None, *, force: bool = False, log: Log = print) -> Path:
    """Build every control-plane binary into the cache; return its directory. No-op when
    cached."""
    return _cached_or_built(versions, force, log, bin_dir, cached_binaries, targets)


def build_node(versions: Versions | None = None, *, force: bool = False, log: Log = print
               ) -> Path:
    """Build kubelet, kube-proxy and CoreDNS into the cache; return their directory."""
    return _cached_or_built(versions, force, log, node_bin_dir, cached_node_binaries,
                            node_targets)


def build_tools(versions: Versions | None = None, *, force: bool = False, log: Log = print
                ) -> Path:
    """Build helm (for the chart's tests) into the cache; return its directory."""
    return _cached_or_built(versions, force, log, tools_bin_dir, cached_tool_binaries,
                            tool_targets)


def build_kubectl(versions: Versions | None = None, *, force: bool = False, log: Log = print
                  ) -> Path:
    """Build kubectl (what the docs' commands call) into the cache; return its directory."""
    return _cached_or_built(versions, force, log, kubectl_bin_dir, cached_kubectl,
                            kubectl_targets)


def build_monitoring(versions: Versions | None = None, *, force: bool = False,
                     log: Log = print) -> Path:
    """Build prometheus and promtool (for the monitoring tests) into the cache."""
    return _cached_or_built(versions, force, log, monitoring_bin_dir,
                            cached_monitoring_binaries, monitoring_targets)


def _partial_dir(out: Path) -> Path:
    """This process's build directory beside `out`. Each build has its own, so two at
    once (two terminals, a test fixture beside `dev build`) never write into or rename
    the other's; those left by builds that died are removed."""
    for old in out.parent.glob(f"{out.name}.partial*"):
        pid = old.name.rpartition("-")[2]
        if not (pid.isdigit() and Path(f"/proc/{pid}").exists()):
            shutil.rmtree(old, ignore_errors=True)
    tmp = out.with_name(f"{out.name}.partial-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    return tmp


def _build_set(v: Versions, tgts: list[Target], out: Path, log: Log, *, replace: bool = False
               ) -> Path:
    if shutil.which("go") is None:
        raise BuildError("`go` is not on PATH; install Go >= 1.26 to build the control plane")
    cp_dir = find_controlplane_dir()
    tmp = _partial_dir(out)
    started = time.monotonic()
    timings: dict[str, float] = {}
    for t in tgts:
        t0 = time.monotonic()
        d = write_wrapper(t, cp_dir, log)
        # Fetch the pinned module, then resolve every package the commands import
        # (which downloads exactly the modules they need), so a module missing
        # from the proxy fails here, in seconds, and not minutes into compiling.
        # Not every replace target is served (k8s.io/sample-cli-plugin is not),
        # and none of those is needed, so they are not downloaded one by one.
        _go(["mod", "download", f"{t.upstream}@{t.version}"], d, f"download {t.name}", log)
        _go(["list", "-deps", "-f", "{{.ImportPath}}", *t.packages.values()], d,
            f"resolve {t.name}", log)
        ldflags = " ".join(["-s", "-w", *t.ldflags])
        pkgs = list(t.packages.values())
        _go(
            ["build", "-trimpath", "-ldflags", ldflags, "-o", str(tmp) + "/", *pkgs],
            d,
            f"compile {t.name}",
            log,
        )
        # `go build -o dir/` names a binary after its package's last element.
        for binary, pkg in t.packages.items():
            parts = pkg.rstrip("/").split("/")
            if re.fullmatch(r"v\d+", parts[-1]):
                parts.pop()  # go names `.../server/v3` after `server`
            built = tmp / parts[-1]
            if built.name != binary:
                built.rename(tmp / binary)
        timings[t.name] = round(time.monotonic() - t0, 1)
        log(f"built {t.name} in {timings[t.name]}s")
    manifest = {
        "versions": asdict(v),
        "go": _go(["env", "GOVERSION"], cp_dir, "go version", log).strip(),
        "seconds": timings,
        "total_seconds": round(time.monotonic() - started, 1),
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if out.exists() and not replace:
        # A build of the same pinned versions finished first: keep it, since running
        # clusters may be using its binaries.
        shutil.rmtree(tmp)
        return out
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    log(f"built all in {manifest['total_seconds']}s: {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m shipyard.dev.build",
        description="Build (or reuse) etcd, kube-apiserver, kube-controller-manager, "
        "kube-scheduler, kwok and kubectl. Example: python -m shipyard.dev.build",
    )
    p.add_argument("--force", action="store_true", help="rebuild even if cached")
    p.add_argument("--print-dir", action="store_true", help="print the binary dir and exit")
    p.add_argument("--no-node", action="store_true",
                   help="skip kubelet, kube-proxy and coredns (real nodes), helm and prometheus")
    a = p.parse_args(argv)
    if a.print_dir:
        print(bin_dir())
        return 0
    t0 = time.monotonic()

    def log(m: str) -> None:
        print(f"[dev build +{time.monotonic() - t0:6.1f}s] {m}", flush=True)

    try:
        build(force=a.force, log=log)
        build_kubectl(force=a.force, log=log)
        if not a.no_node:
            build_node(force=a.force, log=log)
            build_tools(force=a.force, log=log)
            build_monitoring(force=a.force, log=log)
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
