"""Valid-looking experiment specs for the API-server acceptance test
(tests/integration/test_dry_run_acceptance.py): every field, the new ones too, drawn
mostly from what a researcher would write and partly from the edge of what Kubernetes
allows (a name starting with a digit, a label key with two slashes, an env name with a
dot, a mount path with '..' or ':', quantities near int64, ids past 2^31...).

`specs(namespace)` draws whole documents; `MUTATIONS` are single-field changes of a
valid base spec with the spot in the rendered objects where the same value lands, for
the other direction: a value shipyard refuses, planted there, the server refuses too.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

LOWER = string.ascii_lowercase + string.digits
# Mostly DNS-ish characters, some that Kubernetes refuses in one place or another.
_name_chars = st.sampled_from(list(LOWER * 4 + "-" * 3 + ".") + list("A_Z @/:"))
_key_chars = st.sampled_from(list(string.ascii_letters + string.digits + "-_." * 3) + list(" /@:+"))


# A spec has thirty fields and one bad one refuses it: most specs are drawn "clean" (only
# plausible values, every field varied), the rest "edgy" (each field at times at the edge).
EDGY = [False]


@st.composite
def _either(draw: st.DrawFn, good: st.SearchStrategy[Any], edgy: st.SearchStrategy[Any]) -> Any:
    return draw(edgy if EDGY[0] else good)


def mostly(good: st.SearchStrategy[Any], *edge: st.SearchStrategy[Any], odds: int = 12) -> st.SearchStrategy[Any]:
    """`good`; in an edgy spec, `odds` times as often as the edge cases."""
    return _either(good, st.one_of(*([good] * odds), *edge))


@st.composite
def edgy(draw: st.DrawFn, strategy: st.SearchStrategy[Any]) -> Any:
    """`strategy` drawn with its edge cases (the single-field mutations)."""
    EDGY[0] = True
    return draw(strategy)


def _text(chars: st.SearchStrategy[str], low: int, high: int) -> st.SearchStrategy[str]:
    return st.text(chars, min_size=low, max_size=high)


def _word(first: str, middle: str, last: str, high: int = 10) -> st.SearchStrategy[str]:
    """first + middle* + last, or one `first` character (cheaper than from_regex)."""
    return st.one_of(st.sampled_from([c for c in first if c in last]),
                     st.builds(lambda a, b, c: a + b + c, st.sampled_from(list(first)),
                               _text(st.sampled_from(list(middle)), 0, high), st.sampled_from(list(last))))


# The factories below are pure: one strategy object per argument, built once.
@functools.cache
def names(high: int = 20) -> st.SearchStrategy[str]:
    """DNS-label-ish names: usually fine, sometimes a digit first, a dot, an uppercase."""
    good = _word(string.ascii_lowercase, LOWER * 3 + "-", LOWER)
    return mostly(good, _text(_name_chars, 0, high),
                  st.sampled_from(["1exp", "a" * 63, "a" * 64, "a-", "-a", "a.b", "x" * high]))


@functools.cache
def subdomains() -> st.SearchStrategy[str]:
    part = _word(LOWER, LOWER * 3 + "-", LOWER, 6)
    good = st.lists(part, min_size=1, max_size=3).map(".".join)
    return mostly(good, _text(_name_chars, 0, 30),
                  st.sampled_from(["a..b", "a.-b", "." * 3, "x" * 254, "x" * 253, "my-secret"]))


@functools.cache
def qualified_names() -> st.SearchStrategy[str]:
    """Label keys, annotation keys, taint keys: prefix/name, mostly plausible."""
    alnum = string.ascii_letters + string.digits
    name = mostly(_word(alnum, alnum + "-_." * 4, alnum, 8),
                  _text(_key_chars, 0, 12), st.sampled_from(["x" * 63, "x" * 64, "a_", "_a"]), odds=6)
    prefix = mostly(st.just(""), subdomains().map(lambda p: p + "/"),
                    st.sampled_from(["/", "a/b/", "Example.com/", "kubernetes.io/"]), odds=4)
    return st.builds(lambda p, n: p + n, prefix, name)


@functools.cache
def label_values() -> st.SearchStrategy[str]:
    alnum = string.ascii_letters + string.digits
    return mostly(st.one_of(st.just(""), _word(alnum, alnum + "-_." * 4, alnum, 8)),
                  _text(_key_chars, 0, 12), st.sampled_from(["v" * 63, "v" * 64, "-v", "v."]), odds=6)


@functools.cache
def env_names() -> st.SearchStrategy[str]:
    upper = string.ascii_uppercase + "_"
    return mostly(_word(upper, upper + string.digits, upper + string.digits), _text(_key_chars, 0, 10),
                  st.sampled_from(["my.var", "MY-VAR", "1BAD", ".", "..", "..x", "A=B", "é"]), odds=6)


@functools.cache
def paths(absolute: bool = True) -> st.SearchStrategy[str]:
    seg = _text(st.sampled_from(list(string.ascii_lowercase * 3 + "_-")), 1, 6)
    odd = _text(st.sampled_from(list(string.ascii_lowercase + "._-: ")), 1, 6)
    good = st.lists(seg, min_size=1, max_size=3).map(lambda p: ("/" if absolute else "") + "/".join(p))
    edge = st.lists(odd, min_size=1, max_size=3).map(lambda p: ("/" if absolute else "") + "/".join(p))
    return mostly(good, edge, st.sampled_from(
        ["/data", "/", "data", "/a/../b", "..", "../x", "/a:b", "/dev/shm", "/etc/shipyard", "a/b", "",
         "/data/", " /data"]))


@functools.cache
def quantities(kind: str) -> st.SearchStrategy[object]:
    """A replica's cpu or memory: the plausible ones fit any machine of the specs
    (cpu-small's 1.9 cores and 7.5 GiB) and leave room for the /dev/shm sizes below."""
    if kind == "cpu":
        return mostly(st.one_of(st.sampled_from(["100m", "1", "0.5", "250m", 1, "1m", "1900m"]),
                                st.integers(1, 1)),
                      st.sampled_from(["9223372036854775807m", "0", "1e3", "0.0001", "3", 2]))
    return mostly(st.one_of(st.sampled_from(["512Mi", "1Gi", "1G", 1 << 30, "2Gi", "7Gi"]),
                            st.integers(1 << 28, 1 << 32)),
                  st.sampled_from(["8Ei", "7Ei", "0", "1m", "1", 9223372036854775807, "64Mi"]))


# A role's /dev/shm: what fits the smallest memory above (256 MiB), or the whole machine.
SHM_SMALL = ["0", "64Mi", "128Mi", "256Mi"]
SHM_WHOLE = {"cpu-small": [*SHM_SMALL, "1Gi", "4Gi"], "gpu-a100": [*SHM_SMALL, "16Gi", "64Gi"],
             "box": [*SHM_SMALL, "1Gi", "16Gi"]}


@st.composite
def volumes(draw: st.DrawFn) -> dict[str, Any]:
    source = draw(st.sampled_from(["pvc", "nfs", "host_path", "empty_dir", "secret"]))
    value: object = {
        "pvc": subdomains(), "secret": subdomains(), "host_path": paths(),
        "nfs": st.fixed_dictionaries({"server": mostly(st.sampled_from(["nfs.lab", "10.0.0.2"]),
                                                       st.sampled_from(["a b", ""]), odds=4),
                                      "path": paths()}),
        "empty_dir": st.one_of(st.just({}), st.fixed_dictionaries(
            {"size_limit": mostly(st.sampled_from(["1Gi", "100Gi", "1Ei", "1"]), st.just("0"))})),
    }[source]
    out = {"name": draw(names()), source: draw(value)}  # type: ignore[arg-type]
    if EDGY[0] and draw(st.integers(0, 19)) == 0:
        out["pvc"] = "second-source"  # two sources: refused
    return out


def _one_of_sources(extra: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(lambda kind, name, rest: {kind: name, **rest},
                     st.sampled_from(["secret", "config_map"]), subdomains(), st.fixed_dictionaries({}, optional=extra))


def _unique(items: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """In a plausible spec, no two items share `key` (a duplicate is refused); edgy ones keep them."""
    if EDGY[0]:
        return items
    seen: set[object] = set()
    out = []
    for item in items:
        if item[key] not in seen:
            seen.add(item[key])
            out.append(item)
    return out


@st.composite
def _resources(draw: st.DrawFn, gpus: int) -> dict[str, Any]:
    """Extra resources on the whole machine, or a share of it (cpu and memory)."""
    # An edgy spec may ask for more GPUs than the machine has.
    top = 8 if EDGY[0] else gpus
    if draw(st.booleans()):
        return draw(st.fixed_dictionaries({}, optional={"extra": st.dictionaries(
            mostly(st.sampled_from(["rdma/hca", "vpc.amazonaws.com/efa", "example.com/x"]),
                   qualified_names(), st.sampled_from(["nvidia.com/gpu", "cpu"]), odds=4),
            st.integers(0, 4), max_size=2), "gpus": st.integers(0, top)}))
    return draw(st.fixed_dictionaries({"cpu": quantities("cpu"), "memory": quantities("memory")},
                                      optional={"gpus": st.integers(0, min(top, 1))}))


@st.composite
def roles(draw: st.DrawFn, volume_names: list[str], index: int, gpus: dict[str, int]) -> dict[str, Any]:
    machine = draw(st.sampled_from(sorted(gpus)))
    role: dict[str, Any] = {
        "name": draw(names(12)) if index else draw(st.sampled_from(["worker", "trainer"])),
        "replicas": draw(st.integers(1, 3)),
        "machine_type": machine,
        "command": draw(st.lists(st.text(string.printable, max_size=12), min_size=1, max_size=3).filter(
            lambda c: c[0].strip())),
    }
    resources = draw(_resources(gpus[machine]))
    whole = "memory" not in resources
    optional: dict[str, st.SearchStrategy[Any]] = {
        "image": mostly(st.sampled_from(["python:3.11-slim", "registry.example/team/x:1"]),
                        st.sampled_from([" python", "python ", ""]), odds=6),
        "image_pull_policy": mostly(st.sampled_from(["Always", "IfNotPresent", "Never"]), st.just("Sometimes")),
        "env": st.dictionaries(env_names(), st.text(string.printable, max_size=8), max_size=3),
        "env_from": st.lists(_one_of_sources({"prefix": env_names(), "optional": st.booleans()}), max_size=2),
        "env_keys": st.dictionaries(env_names(), _one_of_sources({"optional": st.booleans()}).flatmap(
            lambda s: st.builds(lambda k: {**s, "key": k}, st.one_of(env_names(), qualified_names()))),
            max_size=2),
        "annotations": st.dictionaries(qualified_names(), st.text(string.printable, max_size=10), max_size=3),
        "mounts": st.lists(st.fixed_dictionaries(
            {"volume": mostly(st.sampled_from(volume_names or ["nope"]), st.just("nope")),
             "path": paths()},
            optional={"read_only": st.booleans(), "sub_path": paths(absolute=False)}),
            max_size=3 if volume_names else 0).map(lambda m: _unique(m, "path")),
        "shm_size": mostly(st.sampled_from(SHM_WHOLE[machine] if whole else SHM_SMALL),
                           st.sampled_from(["100Ti", "64Gi"])),
        # Only a whole-machine replica may use the node's network (its ports are the node's).
        "host_network": st.booleans() if whole or EDGY[0] else st.just(False),
        "resources": st.just(resources),
        "port": st.integers(1024, 65535),
        "procs_per_replica": st.integers(1, 8),
        # Relative: inside the shipped workdir when there is one.
        "working_dir": st.one_of(paths(), paths(absolute=False)),
    }
    role |= draw(st.fixed_dictionaries({}, optional=optional))
    if not EDGY[0]:  # a variable set in env and env_keys both is refused
        role["env_keys"] = {k: v for k, v in role.get("env_keys", {}).items() if k not in role.get("env", {})}
    return role


@st.composite
def specs(draw: st.DrawFn, namespace: str) -> dict[str, Any]:
    """One experiment document: six in seven plausible (shipyard must accept nearly all of
    them), the rest edgy (mostly refused)."""
    EDGY[0] = draw(st.integers(0, 6)) == 0  # strategies below are built after this, per spec
    vols = _unique(draw(st.lists(volumes(), max_size=3)), "name")
    names_of = [v["name"] for v in vols]
    box = {"name": "box", "cpu": 8, "memory": "32Gi", "gpus": draw(st.integers(0, 2))}
    box |= draw(st.fixed_dictionaries({}, optional={
        "labels": st.dictionaries(qualified_names(), label_values(), max_size=2),
        "taints": st.lists(st.fixed_dictionaries({"key": qualified_names()},
                                                 optional={"value": label_values()}), max_size=2),
        "gpu_model": label_values(),
    }))
    gpus = {"cpu-small": 0, "gpu-a100": 8, "box": box["gpus"]}
    n_roles = draw(st.integers(1, 3))
    spec: dict[str, Any] = {
        "name": draw(st.one_of(st.just("exp"), names(24))),
        "namespace": namespace,
        "roles": _unique([draw(roles(names_of, i, gpus)) for i in range(n_roles)], "name"),
        "volumes": vols,
    }
    spec |= draw(st.fixed_dictionaries({}, optional={
        "labels": st.dictionaries(qualified_names(), label_values(), max_size=3),
        "queue": names(),
        "service_account": subdomains(),
        "image_pull_secrets": st.lists(subdomains(), max_size=2),
        "security_context": st.fixed_dictionaries({}, optional={
            k: mostly(st.sampled_from([0, 1000, 2**31 - 1, 65534]), st.sampled_from([2**31, -1])) for k in ("run_as_user", "run_as_group", "fs_group")}),
        "topology": st.fixed_dictionaries({"key": qualified_names()}),
        "stop_grace_seconds": st.integers(0, 86400),
        # Shipped to a cluster as a ConfigMap, unpacked by an init container (render/runtime.py).
        "workdir": st.one_of(st.sampled_from(["code", "/src/project", "."]), st.just(False)),
    }))
    if names_of and draw(st.booleans()):
        taken = {m["path"].rstrip("/") for r in spec["roles"] for m in r.get("mounts", [])}
        path = draw(mostly(st.sampled_from(["/ckpt", "/shipyard/checkpoint", "/data"]), paths(), odds=3))
        if not EDGY[0] and path.rstrip("/") in taken:
            path = "/shipyard/checkpoint"  # another volume's mount there is refused
        spec["checkpoint"] = {"volume": draw(mostly(st.sampled_from(names_of), st.just("nope"))), "path": path}
    spec["machine_types"] = [box]
    return spec


# -- the other direction: one field at a time -----------------------------------------

BASE: dict[str, Any] = {
    "name": "base",
    "roles": [{"name": "worker", "replicas": 1, "machine_type": "box", "command": ["python", "t.py"],
               "mounts": [{"volume": "data", "path": "/data"}]}],
    "volumes": [{"name": "data", "empty_dir": {}}],
    "machine_types": [{"name": "box", "cpu": 4, "memory": "8Gi"}],
}

Objects = list[dict[str, Any]]


def _pod(objects: Objects) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == "Pod")


def _container(objects: Objects) -> dict[str, Any]:
    return _pod(objects)["spec"]["containers"][0]


def _set_volume_name(o: Objects, v: str) -> None:
    pod = _pod(o)
    for vol in pod["spec"]["volumes"]:
        if vol["name"] == "data":
            vol["name"] = v
    for m in pod["spec"]["containers"][0]["volumeMounts"]:
        if m["name"] == "data":
            m["name"] = v


def _set_volume(o: Objects, source: dict[str, Any]) -> None:
    """The base spec's volume `data` with another source."""
    for vol in _pod(o)["spec"]["volumes"]:
        if vol["name"] == "data":
            vol.clear()
            vol.update({"name": "data", **source})


def _set_resource(o: Objects, name: str, value: object) -> None:
    for k in ("requests", "limits"):
        _container(o)["resources"][k][name] = str(value)


def _only(obj: dict[str, Any]) -> Callable[[Objects, Any], None]:
    """A plant that replaces the objects by one (see Mutation.alone)."""
    def plant(o: Objects, v: Any) -> None:
        o[:] = [{**obj, "metadata": {**obj["metadata"], "name": v}}]
    return plant


def _dns1123_label(v: str) -> bool:
    return len(v) <= 63 and bool(re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", v))


def _printable_ascii(v: str) -> bool:
    return bool(v) and all(" " <= c <= "~" for c in v)


@dataclass(frozen=True)
class Mutation:
    """`spec(base, value)` puts `value` in the spec; `plant(objects, value)` puts it in the
    base spec's rendered objects where that field lands.

    `refused`: values of the field both sides must refuse (every field must show one).
    `stricter(value)`: true where shipyard refuses on purpose what the server takes
    (k8s_names says why): such a refusal need not be the server's too.
    `alone(value)`: the objects the server checks for an accepted value instead of the
    rendered ones, where those cannot be created as they are (a namespace that does not
    exist: the Namespace itself, whose name has the same rule).
    """

    field: str
    values: st.SearchStrategy[Any]
    spec: Callable[[dict[str, Any], Any], None]
    plant: Callable[[Objects, Any], None]
    refused: tuple[Any, ...] = ()
    stricter: Callable[[Any], bool] = lambda v: False
    alone: Callable[[Any], Objects] | None = None


_NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {}}
_ACCOUNT = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {}}
# int64's edge, as the quantities a spec may give.
_INT64 = 2**63 - 1
_BIG_MEMORY = st.sampled_from(["8Ei", "7Ei", "1Ei", str(_INT64), str(_INT64 + 1), _INT64, 2**63, "1e18", "1e19"])
_BIG_CPU = st.sampled_from([f"{_INT64}m", f"{_INT64 + 1}m", str(_INT64 // 1000), str(_INT64 // 1000 + 1),
                            "9223372036854775", "1e15", "1e16", "1e20"])

MUTATIONS = [
    Mutation("name (the Service's)", names(40).filter(lambda v: len(v) <= 40),
             lambda s, v: s.__setitem__("name", v),
             lambda o, v: o[0]["metadata"].__setitem__("name", v), refused=("a.b", "A", "", "a" * 64),
             # A DNS-1035 label, as older servers require of a Service; the dev server
             # (v1.36, relaxed Service name validation) takes any DNS-1123 label ('1exp').
             stricter=_dns1123_label),
    Mutation("namespace", names(), lambda s, v: s.__setitem__("namespace", v), _only(_NAMESPACE),
             refused=("NS", "a.b", "-a", "a" * 64, ""),
             alone=lambda v: [{**_NAMESPACE, "metadata": {"name": v}}]),
    Mutation("role name", st.one_of(names(40), st.sampled_from(["a" * 31, "a" * 63, "a" * 64])),
             lambda s, v: s["roles"][0].__setitem__("name", v),
             lambda o, v: _container(o).__setitem__("name", v), refused=("Trainer", "a_b", "a.b", "", "a" * 64),
             # 30 characters at most: <experiment>-<role>-<index> is a host name.
             stricter=_dns1123_label),
    Mutation("labels key", qualified_names(), lambda s, v: s.__setitem__("labels", {v: "x"}),
             lambda o, v: _pod(o)["metadata"]["labels"].__setitem__(v, "x"), refused=("a/b/c", "bad key", "_a")),
    Mutation("labels value", label_values(), lambda s, v: s.__setitem__("labels", {"k": v}),
             lambda o, v: _pod(o)["metadata"]["labels"].__setitem__("k", v), refused=("v v", "-v", "v" * 64)),
    Mutation("annotations key", qualified_names(),
             lambda s, v: s["roles"][0].__setitem__("annotations", {v: "x"}),
             lambda o, v: _pod(o)["metadata"]["annotations"].__setitem__(v, "x"), refused=("Bad Key", "a/b/c")),
    Mutation("machine label key", qualified_names(),
             lambda s, v: s["machine_types"][0].__setitem__("labels", {v: "x"}),
             lambda o, v: _pod(o)["spec"]["nodeSelector"].__setitem__(v, "x"), refused=("bad key", "/x")),
    Mutation("machine label value", label_values(),
             lambda s, v: s["machine_types"][0].__setitem__("labels", {"k": v}),
             lambda o, v: _pod(o)["spec"]["nodeSelector"].__setitem__("k", v), refused=("v v", "v.")),
    Mutation("taint key", qualified_names(),
             lambda s, v: s["machine_types"][0].__setitem__("taints", [{"key": v}]),
             lambda o, v: _pod(o)["spec"].__setitem__(
                 "tolerations", [{"key": v, "operator": "Equal", "value": "", "effect": "NoSchedule"}]),
             refused=("bad key", "a//b")),
    Mutation("taint value", label_values(),
             lambda s, v: s["machine_types"][0].__setitem__("taints", [{"key": "k", "value": v}]),
             lambda o, v: _pod(o)["spec"].__setitem__(
                 "tolerations", [{"key": "k", "operator": "Equal", "value": v, "effect": "NoSchedule"}]),
             refused=("v v", "_v")),
    Mutation("volume name", names().filter(lambda v: not v.startswith("shipyard-")), lambda s, v: (s["volumes"][0].__setitem__("name", v),
                                                   s["roles"][0]["mounts"][0].__setitem__("volume", v)),
             _set_volume_name, refused=("Data", "a.b", "a" * 64)),
    Mutation("env name", env_names(), lambda s, v: s["roles"][0].__setitem__("env", {v: "x"}),
             lambda o, v: _container(o)["env"].append({"name": v, "value": "x"}), refused=("A=B", "é", "=", ""),
             # The classic rule (a name a shell can use); the server takes any printable ASCII but '='.
             stricter=lambda v: _printable_ascii(v) and "=" not in v),
    Mutation("env_from prefix", env_names(),
             lambda s, v: s["roles"][0].__setitem__("env_from", [{"secret": "s", "prefix": v}]),
             lambda o, v: _container(o).__setitem__("envFrom", [{"secretRef": {"name": "s"}, "prefix": v}]),
             # An empty prefix is no prefix to the server; to shipyard, a mistake.
             refused=("A=B", "é"), stricter=lambda v: not v or (_printable_ascii(v) and "=" not in v)),
    Mutation("env_from secret", subdomains(),
             lambda s, v: s["roles"][0].__setitem__("env_from", [{"secret": v}]),
             lambda o, v: _container(o).__setitem__("envFrom", [{"secretRef": {"name": v}}]),
             refused=("S", "a..b", "x" * 254)),
    Mutation("env_keys key", st.one_of(env_names(), qualified_names()),
             lambda s, v: s["roles"][0].__setitem__("env_keys", {"K": {"secret": "s", "key": v}}),
             lambda o, v: _container(o)["env"].append(
                 {"name": "K", "valueFrom": {"secretKeyRef": {"name": "s", "key": v}}}),
             refused=("a/b", "..", "a b", "")),
    # With a domain: a native name (cpu, kubernetes.io/x) is another field's, refused by shipyard only.
    Mutation("extra resource name", qualified_names().filter(
        lambda v: "/" in v and "kubernetes.io/" not in v and v != "nvidia.com/gpu"),
             lambda s, v: s["roles"][0].__setitem__("resources", {"extra": {v: 1}}),
             lambda o, v: _set_resource(o, v, 1), refused=("a b/c", "example.com/a b", "a/b/c")),
    Mutation("extra resource units (int64)", st.sampled_from([0, 1, _INT64 // 1000, _INT64 // 1000 + 1, 2**62]),
             lambda s, v: s["roles"][0].__setitem__("resources", {"extra": {"rdma/hca": v}}),
             lambda o, v: _set_resource(o, "rdma/hca", v), refused=(-1,),
             # The server's quantities have no upper bound; the scheduler counts milli-units in int64.
             stricter=lambda v: v > _INT64 // 1000),
    # Past int64 the server still takes a quantity (arbitrary precision) but the scheduler
    # and kubelet count in int64; shipyard also refuses exponents ('1e18'), a likely typo.
    Mutation("memory (int64)", _BIG_MEMORY, lambda s, v: s["machine_types"][0].__setitem__("memory", v),
             lambda o, v: _set_resource(o, "memory", v), refused=("-1Gi",),
             stricter=lambda v: not str(v).startswith("-")),
    Mutation("cpu (int64)", _BIG_CPU, lambda s, v: s["machine_types"][0].__setitem__("cpu", v),
             lambda o, v: _set_resource(o, "cpu", v), refused=("-1",),
             stricter=lambda v: not str(v).startswith("-")),
    Mutation("mount path", paths(), lambda s, v: s["roles"][0]["mounts"][0].__setitem__("path", v),
             lambda o, v: _container(o)["volumeMounts"][0].__setitem__("mountPath", v), refused=("",),
             # Absolute, no '..', no ':': what the runtime can mount.
             stricter=bool),
    Mutation("mount sub_path", paths(absolute=False).filter(bool),
             lambda s, v: s["roles"][0]["mounts"][0].__setitem__("sub_path", v),
             lambda o, v: _container(o)["volumeMounts"][0].__setitem__("subPath", v), refused=("/abs", "a/../..")),
    Mutation("host_path", paths(), lambda s, v: s["volumes"].__setitem__(0, {"name": "data", "host_path": v}),
             lambda o, v: _set_volume(o, {"hostPath": {"path": v, "type": "Directory"}}),
             refused=("", "/a/../b", ".."), stricter=lambda v: bool(v) and ".." not in v.split("/")),
    Mutation("nfs path", paths(),
             lambda s, v: s["volumes"].__setitem__(0, {"name": "data", "nfs": {"server": "nfs.lab", "path": v}}),
             lambda o, v: _set_volume(o, {"nfs": {"server": "nfs.lab", "path": v}}), refused=("", "data"),
             stricter=lambda v: v.startswith("/")),
    Mutation("pvc name", subdomains(), lambda s, v: s["volumes"].__setitem__(0, {"name": "data", "pvc": v}),
             lambda o, v: _set_volume(o, {"persistentVolumeClaim": {"claimName": v}}), refused=("",),
             # The server asks only for a name; a claim's own name is a DNS-1123 subdomain.
             stricter=bool),
    Mutation("secret volume name", subdomains(),
             lambda s, v: s["volumes"].__setitem__(0, {"name": "data", "secret": v}),
             lambda o, v: _set_volume(o, {"secret": {"secretName": v}}), refused=("",), stricter=bool),
    # The pod's serviceAccountName has the ServiceAccount's own name rule; planted alone
    # because the admission plugin refuses a pod whose account does not exist anyway.
    Mutation("service_account", subdomains(), lambda s, v: s.__setitem__("service_account", v),
             _only(_ACCOUNT), refused=("Bad", "a..b", "x" * 254)),
    Mutation("run_as_user", st.sampled_from([-1, 0, 2**31 - 1, 2**31, 2**40]),
             lambda s, v: s.__setitem__("security_context", {"run_as_user": v}),
             lambda o, v: _pod(o)["spec"].__setitem__("securityContext", {"runAsUser": v}), refused=(-1,)),
    Mutation("image", st.sampled_from([" python", "python ", "", "py thon", "python:3"]),
             lambda s, v: s["roles"][0].__setitem__("image", v),
             lambda o, v: _container(o).__setitem__("image", v), refused=(" python", "python ")),
    Mutation("image_pull_policy", st.sampled_from(["Always", "Never", "Sometimes", "always"]),
             lambda s, v: s["roles"][0].__setitem__("image_pull_policy", v),
             lambda o, v: _container(o).__setitem__("imagePullPolicy", v), refused=("Sometimes", "always")),
]
