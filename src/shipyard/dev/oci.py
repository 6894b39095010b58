"""Write OCI image archives from directories, with nothing but the standard library.

No registry is reachable from a dev machine, so images are made here: each layer is
a gzip'd tar of a directory, the config says entrypoint/env/working dir, and the
archive (oci-layout, index.json, blobs/sha256/...) is what `ctr images import` reads.
Layers are deterministic (sorted entries, fixed mtimes are kept from the files, owner
root) so an unchanged directory gives the same digest and containerd reuses it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ANNOTATION_REF = "org.opencontainers.image.ref.name"
# containerd's importer names images from this annotation, with a full reference.
ANNOTATION_CTR_NAME = "io.containerd.image.name"


@dataclass(frozen=True)
class Layer:
    """A built layer: its gzip blob on disk and the digest of the uncompressed tar."""

    path: Path
    digest: str  # sha256 of the gzip blob
    diff_id: str  # sha256 of the tar
    size: int


@dataclass
class ImageConfig:
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str = "/"
    labels: dict[str, str] = field(default_factory=dict)


class _HashWriter(io.RawIOBase):
    """A file that hashes and counts what goes through it on the way to `out`."""

    def __init__(self, out: io.BufferedWriter) -> None:
        self.out, self.h, self.n = out, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.h.update(b)
        self.n += len(b)
        self.out.write(b)
        return len(b)


def _reset(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def build_layer(src: Path, out: Path, prefix: str = "", exclude: Sequence[str] = ()) -> Layer:
    """gzip'd tar of `src` (placed under `prefix` in the image) written to `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with open(tmp, "wb") as raw:
        gz_hash = _HashWriter(raw)
        # mtime=0 in the gzip header: same input, same blob.
        with gzip.GzipFile(fileobj=gz_hash, mode="wb", compresslevel=1, mtime=0) as gz:
            tar_hash = _HashWriter(gz)  # type: ignore[arg-type]
            with tarfile.open(fileobj=tar_hash, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for path in _walk(src, exclude):
                    rel = path.relative_to(src).as_posix()
                    arc = f"{prefix.strip('/')}/{rel}".strip("/") if rel != "." else prefix.strip("/")
                    if not arc:
                        continue
                    tar.add(path, arcname=arc, recursive=False, filter=_reset)
    tmp.replace(out)
    return Layer(out, f"sha256:{gz_hash.h.hexdigest()}", f"sha256:{tar_hash.h.hexdigest()}",
                 gz_hash.n)


def _walk(src: Path, exclude: Sequence[str]) -> list[Path]:
    """Every path under `src` (links not followed), sorted: parents before children."""
    out = [src]
    for root, dirs, files in os.walk(src):
        rel = os.path.relpath(root, src)
        dirs[:] = [d for d in dirs if os.path.normpath(os.path.join(rel, d)) not in exclude]
        out.extend(Path(root) / n for n in (*dirs, *files)
                   if os.path.normpath(os.path.join(rel, n)) not in exclude)
    return sorted(out, key=lambda p: p.as_posix())


def _blob(data: bytes) -> tuple[str, bytes]:
    return f"sha256:{hashlib.sha256(data).hexdigest()}", data


def write_archive(out: Path, names: Sequence[str], layers: Sequence[Layer],
                  config: ImageConfig) -> str:
    """An OCI image-layout tar at `out` holding one image known by every name in
    `names`; returns the manifest digest."""
    cfg = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": config.entrypoint or None,
            "Cmd": config.cmd or None,
            "Env": [f"{k}={v}" for k, v in config.env.items()],
            "WorkingDir": config.working_dir,
            "Labels": config.labels or None,
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created_by": "shipyard.dev.oci"} for _ in layers],
    }
    cfg_digest, cfg_bytes = _blob(json.dumps(cfg, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": cfg_digest, "size": len(cfg_bytes)},
        "layers": [{"mediaType": MEDIA_LAYER, "digest": layer.digest, "size": layer.size}
                   for layer in layers],
    }
    man_digest, man_bytes = _blob(json.dumps(manifest, sort_keys=True).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": MEDIA_MANIFEST, "digest": man_digest, "size": len(man_bytes),
            "annotations": {ANNOTATION_REF: name, ANNOTATION_CTR_NAME: name},
        } for name in names],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with tarfile.open(tmp, "w") as tar:
        def add_bytes(arc: str, data: bytes) -> None:
            info = tarfile.TarInfo(arc)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add_bytes("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        add_bytes("index.json", json.dumps(index).encode())
        add_bytes(f"blobs/sha256/{cfg_digest.split(':')[1]}", cfg_bytes)
        add_bytes(f"blobs/sha256/{man_digest.split(':')[1]}", man_bytes)
        for layer in layers:
            tar.add(layer.path, arcname=f"blobs/sha256/{layer.digest.split(':')[1]}")
    tmp.replace(out)
    return man_digest


def read_config(archive: Path) -> dict:
    """The image config of the (single) image in an archive written above."""
    with tarfile.open(archive) as tar:
        def blob(digest: str) -> dict:
            f = tar.extractfile(f"blobs/sha256/{digest.split(':')[1]}")
            assert f is not None
            return json.loads(f.read())

        idx = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        manifest = blob(idx["manifests"][0]["digest"])
        return blob(manifest["config"]["digest"])
