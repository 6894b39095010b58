"""Local images for real dev nodes, made without any registry, cached.

- base: `debootstrap --variant=minbase --include=python3,python-is-python3 bookworm`
  (Debian packages only), one layer, built once.
- pause: the sandbox image, `pause.c` from the pinned kubernetes module compiled
  statically with the host's gcc.
- runtime: base + the repository's examples under /opt/shipyard/examples, tagged
  as the experiments' default image `python:3.11-slim` (bookworm's Python is 3.11),
  so the examples' pods run unchanged.
- shipyard: base + shipyard installed from this checkout (`pip install --target`),
  entrypoint `shipyard`, like the repository's Dockerfile.

Archives land in `<cache>/images/`; a layer is rebuilt only when its inputs change.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shipyard.dev import build, oci

SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python-is-python3")
PAUSE_IMAGE = "localhost/shipyard/pause:3.10"
RUNTIME_IMAGES = ("docker.io/library/python:3.11-slim", "localhost/shipyard/runtime:latest")
EXAMPLES_DIR = "/opt/shipyard/examples"
SHIPYARD_LIB = "/opt/shipyard/lib"
ENTRYPOINT = ["shipyard"]
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

Log = Callable[[str], None]


class ImageError(RuntimeError):
    """An image could not be built or imported; the message says what to run."""


@dataclass(frozen=True)
class Image:
    names: tuple[str, ...]
    archive: Path

    @property
    def name(self) -> str:
        return self.names[0]


def images_dir() -> Path:
    return build.cache_root() / "images"


def repo_root() -> Path:
    return build.find_controlplane_dir().parent.parent


def shipyard_image_name() -> str:
    from shipyard import __version__

    return f"localhost/shipyard/shipyard:{__version__}"


def _run(argv: list[str], step: str, **kw: object) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise ImageError(f"{step} failed (`{' '.join(argv)}`):\n{(proc.stderr or proc.stdout)[-3000:]}")
    return proc.stdout


def _mirror() -> str:
    for f in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        try:
            text = f.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            for word in line.split():
                if word.startswith("http") and word.rstrip("/").endswith("/debian"):
                    return word
    return "http://deb.debian.org/debian"


def base_rootfs(log: Log = print) -> Path:
    """The debootstrap'd root file system, made once."""
    d = images_dir() / f"rootfs-{SUITE}-python3"
    rootfs = d / "rootfs"
    if (d / "done").is_file():
        return rootfs
    if shutil.which("debootstrap") is None:
        raise ImageError("`debootstrap` is not installed: run `apt-get install debootstrap`")
    partial = d / "rootfs.partial"
    shutil.rmtree(partial, ignore_errors=True)
    d.mkdir(parents=True, exist_ok=True)
    log(f"debootstrap {SUITE} (+{', '.join(BASE_PACKAGES)}): a few minutes, once")
    _run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE,
          str(partial), _mirror()], "debootstrap")
    # Device nodes come from the runtime; package caches only make the layer big.
    for sub in ("dev", "var/cache/apt/archives", "var/lib/apt/lists"):
        for p in (partial / sub).glob("*"):
            if p.is_file() or p.is_symlink() or p.is_char_device() or p.is_block_device():
                p.unlink()
    shutil.rmtree(rootfs, ignore_errors=True)
    partial.rename(rootfs)
    (d / "done").write_text(SUITE + "\n")
    return rootfs


def _layer(name: str, key: str, make: Callable[[Path], oci.Layer]) -> oci.Layer:
    """A layer cached under a key of its inputs (a json sidecar keeps its digests)."""
    blob = images_dir() / "layers" / f"{name}-{key}.tar.gz"
    meta = blob.with_suffix(".json")
    if blob.is_file() and meta.is_file():
        m = json.loads(meta.read_text())
        _used(blob, meta)
        return oci.Layer(blob, m["digest"], m["diff_id"], m["size"])
    _prune(blob.parent, f"{name}-*", keep=(blob, meta))
    layer = make(blob)
    meta.write_text(json.dumps({"digest": layer.digest, "diff_id": layer.diff_id,
                                "size": layer.size}))
    return layer


# Every checkout on the machine shares this cache, and their clusters come up at the
# same time (worktrees, CI): another key's layer or archive may be one a bring-up is
# importing right now. It is removed only once unused for this long.
STALE_S = 3600.0


def _used(*paths: Path) -> None:
    """Mark cached entries as in use (their mtime), so no prune takes them."""
    for p in paths:
        with contextlib.suppress(OSError):
            os.utime(p)


def _prune(folder: Path, pattern: str, keep: tuple[Path, ...]) -> None:
    """Remove the entries of `pattern` not used for STALE_S seconds, but `keep`."""
    now = time.time()
    for old in folder.glob(pattern):
        with contextlib.suppress(OSError):  # another prune may have taken it first
            if old not in keep and now - old.stat().st_mtime > STALE_S:
                old.unlink()


def _tree_key(paths: list[Path], extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            if "__pycache__" in f.parts:
                continue
            h.update(str(f.relative_to(root.parent)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def base_layer(log: Log = print) -> oci.Layer:
    rootfs = base_rootfs(log)

    def pack(out: Path) -> oci.Layer:
        log("packing the base layer")
        return oci.build_layer(rootfs, out)

    return _layer("base", f"{SUITE}-python3", pack)


def pause_layer(log: Log = print) -> oci.Layer:
    src = _pause_source()
    key = hashlib.sha256(src.read_bytes()).hexdigest()[:16]

    def make(out: Path) -> oci.Layer:
        if shutil.which("gcc") is None:
            raise ImageError("`gcc` is not installed: run `apt-get install gcc libc6-dev`")
        with tempfile.TemporaryDirectory(prefix="shipyard-pause-") as work:
            _run(["gcc", "-Os", "-static", "-DVERSION=shipyard", "-o", f"{work}/pause", str(src)],
                 "compile pause")
            _run(["strip", f"{work}/pause"], "strip pause")
            return oci.build_layer(Path(work), out)

    return _layer("pause", key, make)


def _pause_source() -> Path:
    v = build.Versions.from_env().kubernetes
    modcache = _run(["go", "env", "GOMODCACHE"], "go env").strip()
    src = Path(modcache) / f"k8s.io/kubernetes@{v}/build/pause/linux/pause.c"
    if not src.is_file():
        _run(["go", "mod", "download", f"k8s.io/kubernetes@{v}"], "download kubernetes",
             cwd=build.find_controlplane_dir() / "kubernetes",
             env={**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"})
    if not src.is_file():
        raise ImageError(f"pause.c not found at {src}; run `shipyard dev build` first")
    return src


def examples_layer() -> oci.Layer:
    src = repo_root() / "examples"
    return _layer("examples", _tree_key([src]), lambda out: oci.build_layer(
        src, out, prefix=EXAMPLES_DIR, exclude=("__pycache__",)))


def shipyard_layer(log: Log = print) -> oci.Layer:
    root = repo_root()
    key = _tree_key([root / "src" / "shipyard", root / "pyproject.toml"])

    def make(out: Path) -> oci.Layer:
        log("installing shipyard from this checkout into its image layer")
        with tempfile.TemporaryDirectory(prefix="shipyard-layer-") as work:
            lib = Path(work) / SHIPYARD_LIB.lstrip("/")
            # The host's Python is the image's minor version (3.11): its wheels fit.
            _run([sys.executable, "-m", "pip", "install", "--quiet", "--no-compile",
                  "--disable-pip-version-check", "--target", str(lib), str(root)],
                 "pip install shipyard")
            shutil.rmtree(lib / "bin", ignore_errors=True)
            bindir = Path(work) / "usr/local/bin"
            bindir.mkdir(parents=True)
            script = bindir / "shipyard"
            script.write_text("#!/usr/bin/python3\nimport sys\nfrom shipyard.cli.main import main\n"
                              "sys.exit(main())\n")
            script.chmod(0o755)
            return oci.build_layer(Path(work), out)

    return _layer("shipyard", key, make)


def shipyard_config() -> oci.ImageConfig:
    """What shipyard's image runs: the Dockerfile's ENTRYPOINT too."""
    return oci.ImageConfig(entrypoint=ENTRYPOINT, env={
        "PATH": PATH, "LANG": "C.UTF-8", "PYTHONPATH": SHIPYARD_LIB, "PYTHONUNBUFFERED": "1"})


def build_images(log: Log = print) -> list[Image]:
    """Every image archive (built or reused): pause, runtime, shipyard."""
    out = images_dir()
    base = base_layer(log)
    specs: list[tuple[tuple[str, ...], list[oci.Layer], oci.ImageConfig]] = [
        ((PAUSE_IMAGE,), [pause_layer(log)], oci.ImageConfig(entrypoint=["/pause"])),
        (RUNTIME_IMAGES, [base, examples_layer()],
         oci.ImageConfig(cmd=["python3"], env={"PATH": PATH, "LANG": "C.UTF-8"})),
        ((shipyard_image_name(),), [base, shipyard_layer(log)], shipyard_config()),
    ]
    images = []
    for names, layers, config in specs:
        key = hashlib.sha256(json.dumps([names, [la.digest for la in layers], config.__dict__],
                                        sort_keys=True).encode()).hexdigest()[:16]
        archive = out / "archives" / f"{names[0].split('/')[-1].replace(':', '_')}-{key}.tar"
        if archive.is_file():
            _used(archive)
        else:
            _prune(archive.parent, f"{names[0].split('/')[-1].replace(':', '_')}-*.tar",
                   keep=(archive,))
            log(f"writing {archive.name}")
            oci.write_archive(archive, names, layers, config)
        images.append(Image(names, archive))
    return images


def import_images(ctr: list[str], images: list[Image], log: Log = print) -> None:
    """`ctr images import` each archive into containerd's k8s.io namespace; content
    already there is not copied again."""
    for img in images:
        log(f"importing {img.name}")
        _run([*ctr, "-n", "k8s.io", "images", "import", str(img.archive)], f"import {img.name}")
