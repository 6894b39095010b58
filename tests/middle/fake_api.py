"""An in-memory API server behind the ApiClient Protocol (shipyard.kube.api).

What it keeps of the real one, because the code under test depends on it:
- one resourceVersion counter over every write, stamped on each object; a list answers
  with the current one, a watch delivers every change after the version it is given
  (ADDED, MODIFIED, DELETED, in order), and a version older than the kept history
  (`compact()`) raises Gone, as etcd's compaction does;
- 404 NotFound for a missing object or namespace, 409 AlreadyExists on create and
  Conflict when a write's resourceVersion is not the current one;
- the status subresource: a write to the object leaves its status alone, a write to
  /status changes only the status; a merge patch's null removes the key (RFC 7386);
  a patch that changes nothing bumps no version and sends no event;
- label and field selectors on list and watch; generateName; uid and creationTimestamp;
- a bound pod deleted with a grace period is only marked (deletionTimestamp) until its
  kubelet is done (`finish_terminating()`); the garbage collector deletes what an object
  owns (ownerReferences) when it goes (here at once, where the real one takes a moment).

- an Experiment's status pruned to its CRD schema (shipyard.kube.crds), as the real one
  prunes fields a structural schema does not name.

What it does not do: no other schema validation, no admission, no scheduling, no kubelet
(tests set pods' status themselves: `set_pod_phase`). `fail(...)` makes the next matching
calls raise, for the paths that must survive a failed write; `fail(..., lands=True)` makes
a create that is carried out but whose answer is lost (a dropped connection, a 504).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from shipyard.kube.api import ApiClient, Object, Objects
from shipyard.kube.crds import EXPERIMENT_STATUS
from shipyard.kube.errors import AlreadyExists, ApiError, Conflict, Gone, Invalid, NotFound
from shipyard.kube.resources import (
    CLUSTER_CAPACITIES,
    DEPLOYMENTS,
    EXPERIMENTS,
    MACHINE_DEPLOYMENTS,
    MACHINES,
    NAMESPACES,
    NODEPOOLS,
    NODES,
    PODS,
    QUEUES,
    Kind,
)

WITH_STATUS = {EXPERIMENTS, QUEUES, NODEPOOLS, CLUSTER_CAPACITIES, PODS, NODES, DEPLOYMENTS,
               MACHINE_DEPLOYMENTS, MACHINES}
Key = tuple[str, str]  # (namespace or "", name)


@dataclass
class Fault:
    verb: str
    kind: Kind
    error: ApiError
    times: int
    name: str | None = None
    after: int = 0  # matching calls that still succeed first
    lands: bool = False  # the call is carried out, then the error is raised (create only)


@dataclass(frozen=True)
class Event:
    rv: int
    type: str
    kind: Kind
    obj: Object


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null removes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _split_terms(selector: str) -> list[str]:
    """Commas split terms, except inside `in (a,b)`."""
    terms, depth, cur = [], 0, ""
    for ch in selector:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            terms.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        terms.append(cur.strip())
    return terms


def label_match(selector: str | None, labels: dict[str, str]) -> bool:
    for term in _split_terms(selector or ""):
        if " notin " in term or " in " in term:
            negate = " notin " in term
            key, _, values = term.partition(" notin " if negate else " in ")
            allowed = {v.strip() for v in values.strip().strip("()").split(",")}
            inside = labels.get(key.strip()) in allowed
            if inside == negate:
                return False
        elif "!=" in term:
            key, _, value = term.partition("!=")
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, _, value = term.replace("==", "=").partition("=")
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def _field(obj: Object, path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def field_match(selector: str | None, obj: Object) -> bool:
    for term in _split_terms(selector or ""):
        if "!=" in term:
            path, _, value = term.partition("!=")
            if _field(obj, path.strip()) == value.strip():
                return False
        else:
            path, _, value = term.replace("==", "=").partition("=")
            if _field(obj, path.strip()) != value.strip():
                return False
    return True


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class FakeApi:
    """One API server's objects in memory; any number of clients (this object) share it."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.store: dict[Kind, dict[Key, Object]] = {}
        self.rv = 0
        self.history: list[Event] = []
        self.oldest = 0  # versions at or before this are compacted away
        self.faults: list[Fault] = []
        self.calls: list[tuple[str, str, str]] = []  # (verb, plural, namespace/name) of writes
        self.logs: dict[Key, str] = {}
        self.waiting: dict[int, asyncio.Event] = {}  # open watch -> what it waits on
        self._wake: asyncio.Event | None = None
        self._epoch = 0  # bumped by end_watches()
        self._names = itertools.count()
        self.held: dict[Kind, int] = {}  # kind -> the last version its watches deliver

    # -- what tests use -----------------------------------------------------------------

    def fail(self, verb: str, kind: Kind, error: ApiError, *, times: int = 1,
             name: str | None = None, after: int = 0, lands: bool = False) -> None:
        """The next `times` calls of `verb` (create, get, patch, replace, delete...) on
        `kind` (and `name`, if given), `after` more that succeed, raise `error` and
        change nothing; with `lands` (create only) they make the object, then raise."""
        if lands and verb != "create":
            raise ValueError("lands: create only")
        self.faults.append(Fault(verb, kind, error, times, name, after, lands))

    def objects(self, kind: Kind, namespace: str | None = None) -> Objects:
        return [copy.deepcopy(o) for (ns, _), o in sorted(self.store.get(kind, {}).items())
                if namespace is None or ns == namespace]

    def quiet(self, watches: int) -> bool:
        """`watches` watches are open and each has delivered every change so far."""
        return len(self.waiting) == watches and not any(e.is_set() for e in self.waiting.values())

    def compact(self) -> None:
        """Forget the history: a watch from any version before now gets Gone."""
        self.oldest = self.rv
        self.history.clear()

    def end_watches(self) -> None:
        """The server closes every open watch (its timeout): clients watch again."""
        self._epoch += 1
        self._notify()

    def hold(self, kind: Kind) -> None:
        """A lagging watch: `kind`'s watches deliver nothing written from now on..."""
        self.held[kind] = self.rv

    def release(self, kind: Kind) -> None:
        """...until this, when they catch up."""
        self.held.pop(kind, None)
        self._notify()

    def finish_terminating(self) -> list[str]:
        """What the kubelet does for terminating pods: they go. Returns their keys."""
        gone = [key for key, pod in self.store.get(PODS, {}).items()
                if pod["metadata"].get("deletionTimestamp")]
        for key in gone:
            self._remove(PODS, key)
        return [f"{ns}/{name}" for ns, name in gone]

    async def set_pod_phase(self, namespace: str, name: str, phase: str, exit_code: int | None = None) -> None:
        """The kubelet's status report for a pod."""
        status: dict[str, Any] = {"phase": phase}
        if exit_code is not None:
            status["containerStatuses"] = [{"name": "main", "state": {"terminated": {"exitCode": exit_code}}}]
        elif phase == "Running":
            status["containerStatuses"] = [{"name": "main", "ready": True, "state": {"running": {}}}]
        await self.patch(PODS, name, {"status": status}, namespace, subresource="status")

    # -- internals --------------------------------------------------------------------

    def _fault(self, verb: str, kind: Kind, name: str | None) -> ApiError | None:
        """Raise the matching fault's error, or return it when it `lands` (raised later)."""
        for fault in self.faults:
            if fault.verb == verb and fault.kind == kind and fault.name in (None, name):
                if fault.after > 0:
                    fault.after -= 1
                    return None
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                if fault.lands:
                    return fault.error
                raise fault.error
        return None

    def _notify(self) -> None:
        if self._wake is not None:
            self._wake.set()
            self._wake = None

    def _record(self, type_: str, kind: Kind, obj: Object) -> None:
        self.history.append(Event(self.rv, type_, kind, copy.deepcopy(obj)))
        self._notify()

    def _bump(self, obj: Object) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)

    @staticmethod
    def _key(kind: Kind, name: str, namespace: str | None) -> Key:
        return (namespace or "") if kind.namespaced else "", name

    def _find(self, kind: Kind, name: str, namespace: str | None) -> Object:
        obj = self.store.get(kind, {}).get(self._key(kind, name, namespace))
        if obj is None:
            raise NotFound(404, "NotFound", f'{kind.plural} "{name}" not found')
        return obj

    def _remove(self, kind: Kind, key: Key) -> None:
        obj = self.store[kind].pop(key)
        self._bump(obj)
        self._record("DELETED", kind, obj)
        uid = obj["metadata"]["uid"]
        # The garbage collector: what this object owned goes with it (its pods at once:
        # a cascade does not wait for kubelets).
        for other_kind, objs in list(self.store.items()):
            for other_key, other in list(objs.items()):
                if any(ref.get("uid") == uid for ref in other["metadata"].get("ownerReferences") or []):
                    self._remove(other_kind, other_key)

    # -- the Protocol ------------------------------------------------------------------

    async def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                      body: Any = None, content_type: str = "application/json") -> Any:
        raise ApiError(501, "NotImplemented", f"the fake API serves verbs, not {method} {path}")

    async def text(self, path: str, params: dict[str, Any] | None = None) -> str:
        # /api/v1/namespaces/{ns}/pods/{name}/log
        parts = path.strip("/").split("/")
        namespace, name = parts[3], parts[5]
        self._find(PODS, name, namespace)
        return self.logs.get((namespace, name), "")

    async def lines(self, path: str, params: dict[str, Any] | None = None, *,
                    read_timeout_s: float | None = None) -> AsyncIterator[bytes]:
        for line in (await self.text(path, params)).splitlines():
            yield line.encode()

    async def get(self, kind: Kind, name: str, namespace: str | None = None) -> Object:
        self._fault("get", kind, name)
        return copy.deepcopy(self._find(kind, name, namespace))

    async def list(self, kind: Kind, namespace: str | None = None, *, label_selector: str | None = None,
                   field_selector: str | None = None, page_size: int = 5000) -> tuple[Objects, str]:
        self._fault("list", kind, None)
        items = [o for o in self.objects(kind, namespace if kind.namespaced else None)
                 if label_match(label_selector, o["metadata"].get("labels") or {})
                 and field_match(field_selector, o)]
        return items, str(self.rv)

    async def watch(self, kind: Kind, resource_version: str, namespace: str | None = None, *,
                    label_selector: str | None = None, field_selector: str | None = None,
                    timeout_s: int = 300) -> AsyncIterator[tuple[str, Object]]:
        self._fault("watch", kind, None)
        since = int(resource_version or self.rv)
        if since < self.oldest:
            raise Gone(410, "Expired", f"too old resource version: {since} ({self.oldest})")
        epoch, me = self._epoch, next(self._names)
        while epoch == self._epoch:
            seen = self.history[-1].rv if self.history else since
            limit = self.held.get(kind)
            if limit is not None:
                seen = min(seen, max(limit, since))
            events = [e for e in self.history if since < e.rv <= seen and e.kind == kind]
            for event in events:
                since = event.rv
                meta = event.obj["metadata"]
                if (namespace is None or not kind.namespaced or meta.get("namespace") == namespace) \
                        and label_match(label_selector, meta.get("labels") or {}) \
                        and field_match(field_selector, event.obj):
                    yield event.type, copy.deepcopy(event.obj)
            since = max(since, seen)
            if self.history and self.history[-1].rv > since and kind not in self.held:
                continue  # changed while the events above were handled
            if self._wake is None:
                self._wake = asyncio.Event()
            self.waiting[me] = self._wake
            try:
                await self._wake.wait()
            finally:
                del self.waiting[me]

    async def create(self, kind: Kind, body: Object, namespace: str | None = None) -> Object:
        meta = body.get("metadata") or {}
        ns = (namespace or meta.get("namespace")) if kind.namespaced else None
        name = meta.get("name") or (meta.get("generateName", "") + f"{next(self._names):05d}"
                                    if meta.get("generateName") else "")
        lost_answer = self._fault("create", kind, name)
        if not name:
            raise Invalid(422, "Invalid", "metadata.name: Required value")
        if kind.namespaced:
            if not ns:
                raise Invalid(422, "Invalid", "metadata.namespace: Required value")
            if self._key(NAMESPACES, ns, None) not in self.store.get(NAMESPACES, {}):
                raise NotFound(404, "NotFound", f'namespaces "{ns}" not found')
        key = self._key(kind, name, ns)
        objs = self.store.setdefault(kind, {})
        if key in objs:
            raise AlreadyExists(409, "AlreadyExists", f'{kind.plural} "{name}" already exists')
        obj = copy.deepcopy(body)
        if kind == PODS:
            obj["status"] = {"phase": "Pending"}  # the API server's, whatever was sent
        elif kind in WITH_STATUS and kind != NODES:
            obj.pop("status", None)  # a custom resource's status is written through /status
        obj.setdefault("apiVersion", kind.api_version)
        obj.setdefault("kind", kind.kind)
        m = obj.setdefault("metadata", {})
        m["name"] = name
        if ns:
            m["namespace"] = ns
        m.pop("generateName", None)
        m["uid"] = str(uuid.uuid4())
        m["creationTimestamp"] = _rfc3339(self.clock())
        m["generation"] = 1
        self._bump(obj)
        objs[key] = obj
        self.calls.append(("create", kind.plural, f"{ns or ''}/{name}"))
        self._record("ADDED", kind, obj)
        if lost_answer is not None:
            raise lost_answer
        return copy.deepcopy(obj)

    async def bind(self, pod: str, namespace: str, node: str) -> None:
        obj = self._find(PODS, pod, namespace)
        if obj.get("spec", {}).get("nodeName"):
            raise Conflict(409, "Conflict", f'pod {pod} is already assigned to node "{obj["spec"]["nodeName"]}"')
        await self.patch(PODS, pod, {"spec": {"nodeName": node}}, namespace)

    def _write(self, kind: Kind, old: Object, new: Object, subresource: str | None, verb: str) -> Object:
        want = (new.get("metadata") or {}).get("resourceVersion")
        if want is not None and want != old["metadata"]["resourceVersion"]:
            raise Conflict(409, "Conflict", f"the object has been modified (resourceVersion {want} is not "
                                            f"{old['metadata']['resourceVersion']})")
        if kind in WITH_STATUS:
            if subresource == "status":  # only the status moves
                new = {**old, "status": new.get("status")} if "status" in new else dict(old)
                if new.get("status") is None:
                    new.pop("status", None)
                elif kind == EXPERIMENTS:
                    new["status"] = prune(new["status"], EXPERIMENT_STATUS)
            elif "status" in old:
                new = {**new, "status": old["status"]}
            else:
                new = {k: v for k, v in new.items() if k != "status"}
        m = new["metadata"] = {**new["metadata"]}
        for fixed in ("uid", "creationTimestamp", "name", "namespace", "deletionTimestamp"):
            if fixed in old["metadata"]:
                m[fixed] = old["metadata"][fixed]
        m["resourceVersion"] = old["metadata"]["resourceVersion"]
        if new == old:
            return copy.deepcopy(old)  # a no-op: no new version, no event
        self._bump(new)
        meta = old["metadata"]
        self.store[kind][self._key(kind, meta["name"], meta.get("namespace"))] = new
        self.calls.append((verb, kind.plural + (f"/{subresource}" if subresource else ""),
                           f"{meta.get('namespace', '')}/{meta['name']}"))
        self._record("MODIFIED", kind, new)
        return copy.deepcopy(new)

    async def patch(self, kind: Kind, name: str, body: Any, namespace: str | None = None, *,
                    subresource: str | None = None, patch_type: str = "merge") -> Object:
        self._fault("patch", kind, name)
        if patch_type != "merge":
            raise ApiError(415, "UnsupportedMediaType", f"the fake API takes merge patches, not {patch_type}")
        old = self._find(kind, name, namespace)
        merged = merge_patch(old, body)
        # A merge patch's resourceVersion is a precondition, not a value.
        merged["metadata"] = {**merged["metadata"]}
        if "resourceVersion" not in ((body.get("metadata") or {}) if isinstance(body, dict) else {}):
            merged["metadata"].pop("resourceVersion", None)
        return self._write(kind, old, merged, subresource, "patch")

    async def replace(self, kind: Kind, body: Object) -> Object:
        meta = body["metadata"]
        self._fault("replace", kind, meta["name"])
        old = self._find(kind, meta["name"], meta.get("namespace"))
        return self._write(kind, old, copy.deepcopy(body), None, "replace")

    async def apply(self, kind: Kind, body: Object, *, force: bool = True) -> Object:
        meta = body["metadata"]
        self._fault("apply", kind, meta["name"])
        try:
            old = self._find(kind, meta["name"], meta.get("namespace"))
        except NotFound:
            return await self.create(kind, body)
        merged = merge_patch(old, body)
        merged["metadata"].pop("resourceVersion", None)
        return self._write(kind, old, merged, None, "apply")

    async def delete(self, kind: Kind, name: str, namespace: str | None = None, *,
                     propagation: str = "Background", grace_s: int | None = None,
                     missing_ok: bool = True) -> None:
        self._fault("delete", kind, name)
        try:
            obj = self._find(kind, name, namespace)
        except NotFound:
            if missing_ok:
                return
            raise
        self.calls.append(("delete", kind.plural, f"{namespace or ''}/{name}"))
        key = self._key(kind, name, namespace)
        if kind == PODS and grace_s != 0 and (obj.get("spec") or {}).get("nodeName"):
            if not obj["metadata"].get("deletionTimestamp"):  # its kubelet stops it first
                new = copy.deepcopy(obj)
                new["metadata"]["deletionTimestamp"] = _rfc3339(self.clock())
                self._bump(new)
                self.store[kind][key] = new
                self._record("MODIFIED", kind, new)
            return
        self._remove(kind, key)

    async def delete_collection(self, kind: Kind, namespace: str, label_selector: str) -> None:
        self._fault("delete_collection", kind, None)
        items, _ = await self.list(kind, namespace, label_selector=label_selector)
        for obj in items:
            await self.delete(kind, obj["metadata"]["name"], namespace)

    async def close(self) -> None:
        pass


def _is_api_client(api: FakeApi) -> ApiClient:
    return api  # never called: mypy checks here that the fake keeps the Protocol


def prune(value: Any, schema: dict[str, Any]) -> Any:
    """What a structural schema keeps of `value`: the API server drops every field the
    schema does not name (unless it preserves unknown fields)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return value
    if isinstance(value, dict):
        if "properties" in schema:
            props = schema["properties"]
            return {k: prune(v, props[k]) for k, v in value.items() if k in props}
        extra = schema.get("additionalProperties")
        return {k: prune(v, extra) for k, v in value.items()} if isinstance(extra, dict) else {}
    if isinstance(value, list) and "items" in schema:
        return [prune(v, schema["items"]) for v in value]
    return value
