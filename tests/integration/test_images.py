"""Local images: the OCI writer, and shipyard's image against the repository's Dockerfile."""

from __future__ import annotations

import json
import re
import tarfile
import tomllib
from pathlib import Path

import pytest

import shipyard
from shipyard.dev import images, oci

REPO = Path(__file__).resolve().parents[2]


def test_oci_archive_is_deterministic_and_readable(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "bin" / "hello").write_text("#!/bin/sh\necho hi\n")
    (src / "link").symlink_to("bin/hello")
    a = oci.build_layer(src, tmp_path / "a.tar.gz", prefix="/opt/x")
    b = oci.build_layer(src, tmp_path / "b.tar.gz", prefix="/opt/x")
    assert (a.digest, a.diff_id) == (b.digest, b.diff_id)
    with tarfile.open(a.path) as t:
        names = t.getnames()
        assert names == sorted(names)
        assert {"opt/x/bin/hello", "opt/x/link"} <= set(names)
        assert t.getmember("opt/x/link").issym()
    config = oci.ImageConfig(entrypoint=["/opt/x/bin/hello"], env={"A": "1"}, working_dir="/w")
    archive = tmp_path / "img.tar"
    oci.write_archive(archive, ["localhost/x:1", "docker.io/library/x:1"], [a], config)
    with tarfile.open(archive) as t:
        index = json.loads(t.extractfile("index.json").read())  # type: ignore[union-attr]
        assert [m["annotations"][oci.ANNOTATION_CTR_NAME] for m in index["manifests"]] == [
            "localhost/x:1", "docker.io/library/x:1"]
        assert "oci-layout" in t.getnames()
    cfg = oci.read_config(archive)
    assert cfg["config"]["Entrypoint"] == ["/opt/x/bin/hello"]
    assert cfg["config"]["Env"] == ["A=1"]
    assert cfg["rootfs"]["diff_ids"] == [a.diff_id]


def _dockerfile_entrypoint() -> list[str]:
    text = (REPO / "Dockerfile").read_text()
    m = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", text, re.M)
    assert m, "Dockerfile has no exec-form ENTRYPOINT"
    return json.loads(m.group(1))


def test_local_shipyard_image_matches_the_dockerfile() -> None:
    if not (REPO / "Dockerfile").is_file():
        pytest.fail("the repository's Dockerfile is missing")
    # Same entrypoint, and the Dockerfile's base is the runtime image's name.
    assert images.shipyard_config().entrypoint == _dockerfile_entrypoint()
    from_line = re.search(r"^FROM\s+(\S+)", (REPO / "Dockerfile").read_text(), re.M)
    assert from_line and images.RUNTIME_IMAGES[0].endswith(from_line.group(1))
    # Same installed version: the layer holds shipyard installed from this checkout,
    # which is what the Dockerfile's `pip install /src` installs.
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert shipyard.__version__ == version
    layer = images.shipyard_layer(log=lambda m: None)
    with tarfile.open(layer.path) as t:
        metas = [n for n in t.getnames()
                 if re.fullmatch(r"opt/shipyard/lib/shipyard-[^/]+\.dist-info/METADATA", n)]
        assert len(metas) == 1, metas
        meta = t.extractfile(metas[0]).read().decode()  # type: ignore[union-attr]
        assert f"\nVersion: {version}\n" in meta
        entry = t.extractfile("usr/local/bin/shipyard").read().decode()  # type: ignore[union-attr]
        assert "from shipyard.cli.main import main" in entry
    assert images.shipyard_image_name().endswith(f":{version}")


def test_a_layer_or_archive_of_another_checkout_is_kept_until_it_goes_stale(tmp_path) -> None:
    """Worktrees share the image cache and bring clusters up at once: an entry of
    another key may be what one of them imports right now."""
    import os
    import time

    mine, theirs, stale = (tmp_path / f"examples-{k}.tar.gz" for k in ("a", "b", "c"))
    for p in (mine, theirs, stale):
        p.write_bytes(b"x")
    old = time.time() - images.STALE_S - 60
    os.utime(stale, (old, old))
    images._prune(tmp_path, "examples-*", keep=(mine,))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["examples-a.tar.gz",
                                                         "examples-b.tar.gz"]
    os.utime(theirs, (old, old))
    images._used(theirs)  # reused: fresh again
    images._prune(tmp_path, "examples-*", keep=(mine,))
    assert theirs.exists()
