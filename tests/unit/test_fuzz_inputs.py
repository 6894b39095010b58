"""Fuzz every input loader: a hostile spec, clusters.yaml, trace, quantity or setting gets
one clear error that names it (or loads, when it happens to be valid), never a traceback
of another kind, and never an invalid value accepted. Examples: tests/unit/fuzzing.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shipyard.local.machine import SettingError, detect_machine
from shipyard.local.store import RunNotFound, Store
from shipyard.sim.trace import MAX_TRACE_GPUS, TraceError, load_csv
from shipyard.spec import (
    ClustersConfig,
    Experiment,
    NodePool,
    Queue,
    SpecError,
    load_clusters_config,
    load_experiment,
)
from shipyard.spec.errors import spec_error
from shipyard.spec.quantity import (
    MAX_INT64,
    MAX_SECONDS,
    parse_cpu_milli,
    parse_duration_seconds,
    parse_memory_bytes,
)

from .fuzzing import (
    BAD_NUMBERS_YAML,
    CLUSTER_NUMERIC_FIELDS,
    HOSTILE_DOCUMENTS,
    NUMERIC_FIELDS,
    VALID_CLUSTERS,
    VALID_SPEC,
    byte_edits,
    check_message,
    deep_or_exploding,
    examples,
    mutate_bytes,
    py_specs,
    scalars,
    tried,
    yaml_with,
)

pytestmark = pytest.mark.filterwarnings("ignore")


def _spec(tmp: Path, suffix: str, data: bytes) -> Path:
    path = tmp / f"spec{suffix}"
    path.write_bytes(data)
    return path


def load_or_clear_error(path: Path) -> Experiment | None:
    try:
        return load_experiment(path)
    except SpecError as exc:
        check_message(str(exc), str(path))
        return None


# -- specs ---------------------------------------------------------------------


@examples(60)
@given(edits=byte_edits, suffix=st.sampled_from([".yaml", ".json"]))
def test_spec_bytes_mutated(tmp_path_factory, edits, suffix):
    tried(f"spec {suffix[1:]} (bytes mutated)")
    base = (json.dumps(VALID_SPEC) if suffix == ".json" else yaml.safe_dump(VALID_SPEC)).encode()
    load_or_clear_error(_spec(tmp_path_factory.mktemp("s"), suffix, mutate_bytes(base, edits)))


@examples(30)
@given(doc=HOSTILE_DOCUMENTS, suffix=st.sampled_from([".yaml", ".json"]))
def test_spec_hostile_documents(tmp_path_factory, doc, suffix):
    tried(f"spec {suffix[1:]} (deep, alias bomb, huge, duplicate keys)")
    text = doc if suffix == ".yaml" else doc.replace("name: ", '{"name": ') + "}"
    assert load_or_clear_error(_spec(tmp_path_factory.mktemp("s"), suffix, text.encode())) is None


@examples(80)
@given(field=st.sampled_from(NUMERIC_FIELDS), bad=st.sampled_from(BAD_NUMBERS_YAML))
def test_spec_numbers_out_of_range_are_rejected(tmp_path_factory, field, bad):
    tried("spec numbers (inf, nan, 400 digits, 5,000 digits, wrong types)")
    # Valid there: a negative priority, and null for optional fields (gpus given
    # alone is optional since `resources.extra`: null means "whatever the machine has").
    if (field, bad) in {("priority", "-1"), ("time_limit", "null"),
                        ("roles.0.resources.gpus", "null")}:
        return
    path = _spec(tmp_path_factory.mktemp("s"), ".yaml", yaml_with(VALID_SPEC, field, bad).encode())
    assert load_or_clear_error(path) is None, f"{field}: {bad[:30]} accepted"


@examples(60)
@given(field=st.sampled_from([*NUMERIC_FIELDS, "name", "roles.0.command", "roles.0.env.A",
                              "roles.0.working_dir", "labels"]), value=scalars)
def test_spec_fields_take_any_value(tmp_path_factory, field, value):
    tried("spec fields (any value)")
    data = json.loads(json.dumps(VALID_SPEC))
    target = data
    *parents, last = field.split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[last] = value
    try:
        text = json.dumps(data, allow_nan=True)
    except ValueError:
        return  # an integer past the digit limit cannot even be written
    exp = load_or_clear_error(_spec(tmp_path_factory.mktemp("s"), ".json", text.encode()))
    if exp is not None:
        request = exp.request(exp.roles[0])
        assert 0 < request.cpu <= MAX_INT64 and 0 < request.memory <= MAX_INT64
        assert exp.time_limit is None or 0 < exp.time_limit <= MAX_SECONDS


PY_BODIES = st.sampled_from([
    "print('noise')\nraise RuntimeError('boom')\n",
    "import sys\nsys.exit(0)\n", "import sys\nsys.exit('bye')\n", "raise SystemExit(3)\n",
    "def f():\n    return f()\nf()\n", "x = (\n", "import os\nos.environ['X']\n",
    "print('x' * 100000)\nraise ValueError('y' * 100000)\n", "experiment = 3\n",
    "from shipyard import Experiment\nexperiment = Experiment(name='a', roles=[])\n",
    "class E(Exception):\n    def __str__(self):\n        raise TypeError\nraise E()\n",
    "\xff", "raise KeyError(10**5000)\n",
])


@examples(30)
@given(body=PY_BODIES)
def test_py_spec_errors_name_the_file(tmp_path_factory, capfd, body):
    tried("spec .py (hand-made: raises, exits, prints)")
    path = _spec(tmp_path_factory.mktemp("s"), ".py", body.encode("utf-8", "surrogateescape")
                 if body != "\xff" else b"\xff")
    capfd.readouterr()
    assert load_or_clear_error(path) is None
    assert capfd.readouterr().out == "", "a .py spec's output must go to stderr"


@examples(60)
@given(source=py_specs())
def test_generated_py_specs(tmp_path_factory, capfd, source):
    tried("spec .py (generated: prints, raises, exits, bad values)")
    path = _spec(tmp_path_factory.mktemp("s"), ".py", source)
    capfd.readouterr()
    exp = load_or_clear_error(path)
    assert capfd.readouterr().out == "", "a .py spec's output must go to stderr"
    if exp is not None:
        assert 0 < exp.request(exp.roles[0]).cpu <= MAX_INT64


@examples(30)
@given(doc=deep_or_exploding(), suffix=st.sampled_from([".yaml", ".yml"]))
def test_generated_deep_and_exploding_documents(tmp_path_factory, doc, suffix):
    tried("spec yaml (generated: nested 65-5,000 deep, alias bombs)")
    assert load_or_clear_error(_spec(tmp_path_factory.mktemp("s"), suffix, doc.encode())) is None


# -- quantities and durations ------------------------------------------------------


@examples(300)
@given(value=scalars)
def test_quantities_are_finite_and_in_range(value):
    tried("quantities and durations")
    for parse, low, high in ((parse_cpu_milli, 0, MAX_INT64), (parse_memory_bytes, 0, MAX_INT64),
                             (parse_duration_seconds, 0, MAX_SECONDS)):
        try:
            got = parse(value)
        except ValueError as exc:
            assert len(str(exc)) < 300
            continue
        assert math.isfinite(got) and low <= got <= high, (parse.__name__, value, got)
        if parse is parse_duration_seconds:
            assert got > 0


# -- clusters.yaml, NodePool, Queue --------------------------------------------------


@examples(60)
@given(edits=byte_edits, field=st.sampled_from(CLUSTER_NUMERIC_FIELDS), bad=st.sampled_from(BAD_NUMBERS_YAML),
       mode=st.sampled_from(["bytes", "number", "document"]), doc=HOSTILE_DOCUMENTS)
def test_clusters_config(tmp_path_factory, edits, field, bad, mode, doc):
    tried("clusters.yaml")
    path = tmp_path_factory.mktemp("c") / "clusters.yaml"
    if mode == "bytes":
        path.write_bytes(mutate_bytes(yaml.safe_dump(VALID_CLUSTERS).encode(), edits))
    elif mode == "number":
        if (field, bad) == ("redispatch_after", "null"):
            return
        path.write_text(yaml_with(VALID_CLUSTERS, field, bad))
    else:
        path.write_text(doc)
    try:
        config = load_clusters_config(path)
    except SpecError as exc:
        check_message(str(exc), str(path))
        return
    assert mode == "bytes", f"{mode} accepted"
    assert isinstance(config, ClustersConfig)


@examples(100)
@given(model=st.sampled_from([NodePool, Queue]), field=st.sampled_from(
    ["min_nodes", "max_nodes", "warm_buffer", "idle_timeout", "cost_per_hour", "weight", "nominal",
     "borrowing_limit"]), value=st.one_of(scalars, st.dictionaries(st.sampled_from(["cpu", "memory", "gpus"]), scalars)))
def test_nodepool_and_queue_objects(model, field, value):
    tried("NodePool and Queue objects")
    data = {"name": "p", "machine_type": "gpu-a100"} if model is NodePool else {"name": "q"}
    data[field] = value
    try:
        obj = model.model_validate(data)
    except ValidationError as exc:
        check_message(str(spec_error("obj", exc, model, "the object")), "obj")
        return
    for name in ("min_nodes", "max_nodes", "warm_buffer", "idle_timeout", "cost_per_hour", "weight"):
        got = getattr(obj, name, None)
        assert got is None or (math.isfinite(got) and got >= 0), (name, got)


# -- traces ----------------------------------------------------------------------------

CELLS = st.one_of(st.sampled_from(["0", "1", "8", "1e18", "nan", "inf", "-1", "1.5", "", "x", "9" * 400,
                                   "1" * 5000, '"', "\x00"]), st.text(max_size=8))


@examples(100)
@given(rows=st.lists(st.tuples(CELLS, CELLS, CELLS), min_size=0, max_size=4), edits=st.one_of(st.none(), byte_edits))
def test_trace_csv(tmp_path_factory, rows, edits):
    tried("trace CSV")
    path = tmp_path_factory.mktemp("t") / "trace.csv"
    data = ("submit_s,gpus,duration_s\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows)).encode()
    path.write_bytes(mutate_bytes(data, edits) if edits else data)
    try:
        arrivals = load_csv(path)
    except TraceError as exc:
        check_message(str(exc), str(path))
        return
    for a in arrivals:
        assert 0 <= a.submit_s <= MAX_SECONDS and 1 <= a.gpus <= MAX_TRACE_GPUS and 0 < a.duration_s <= MAX_SECONDS


# -- environment settings and run references ---------------------------------------------

SETTINGS = ["SHIPYARD_LOCAL_CPUS", "SHIPYARD_LOCAL_MEMORY", "SHIPYARD_LOCAL_GPUS"]


@examples(100)
@given(name=st.sampled_from(SETTINGS), value=st.one_of(
    st.text(alphabet="0123456789.-+eEinfaGMKimk x", max_size=12), st.sampled_from(["9" * 400, "1e18", ".inf"])))
def test_local_settings(monkeypatch_module, name, value):
    tried("environment settings")
    if "\x00" in value:
        return
    monkeypatch_module.setenv(name, value)
    try:
        machine = detect_machine()
    except SettingError as exc:
        check_message(str(exc), name)
        return
    finally:
        monkeypatch_module.delenv(name)
    assert 0 < machine.cpu_milli <= MAX_INT64 and 0 < machine.memory <= MAX_INT64
    assert len(machine.gpus) <= 1024


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@examples(100)
@given(ref=st.one_of(st.text(max_size=30), st.sampled_from(["..", "../..", "/etc", "runs/../x", "a/../../b",
                                                            "~", ".", "x" * 5000])))
def test_run_refs_stay_inside_the_home(shipyard_home, ref):
    tried("run references")
    store = Store()
    try:
        status = store.resolve(ref)
    except RunNotFound:
        return
    assert (store.runs / status.id).resolve().parent == store.runs.resolve()

