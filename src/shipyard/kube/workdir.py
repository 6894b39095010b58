"""Code shipping: the experiment's workdir packed at launch into a ConfigMap the
Experiment owns, unpacked in every pod before the command starts (render/runtime.py).

The archive is deterministic (sorted paths, no owners or times), so the same files
give the same bytes. `.gitignore` and `.shipyardignore` files are honoured in every
folder, with git's rules (pathspec's GitIgnoreSpec); `.git/` is never shipped.
"""

from __future__ import annotations

import base64
import gzip
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pathspec

from shipyard.api.vocab import LABEL_EXPERIMENT
from shipyard.render.runtime import ARCHIVE_KEY, workdir_configmap_name
from shipyard.spec import Experiment

IGNORE_FILES = (".gitignore", ".shipyardignore")
ALWAYS_IGNORED = (".git/",)
# A ConfigMap holds at most 1 MiB (keys and values; the API server's MaxConfigMapSize).
CONFIGMAP_LIMIT = 1024 * 1024


class WorkdirError(ValueError):
    """The workdir cannot be shipped; the message says why and what to do."""


class WorkdirTooLarge(WorkdirError):
    """The packed workdir does not fit in a ConfigMap."""


@dataclass(frozen=True, slots=True)
class Packed:
    archive: bytes
    files: tuple[str, ...]  # the paths shipped, relative to the workdir, in archive order


def resolve_workdir(exp: Experiment, spec_file: Path | None) -> Experiment:
    """`exp` with its workdir an absolute folder: the spec file's folder when unset,
    a relative one taken from the spec file's folder; False stays False."""
    if exp.workdir is False or (exp.workdir is None and spec_file is None):
        return exp
    base = spec_file.resolve().parent if spec_file is not None else Path.cwd()
    folder = base / exp.workdir if exp.workdir else base
    return exp.model_copy(update={"workdir": str(folder.resolve())})


def _specs(folder: Path) -> list[pathspec.GitIgnoreSpec]:
    specs = []
    for name in IGNORE_FILES:
        path = folder / name
        if path.is_file():
            specs.append(pathspec.GitIgnoreSpec.from_lines(path.read_text(errors="replace").splitlines()))
    return specs


def _ignored(rules: list[tuple[str, pathspec.GitIgnoreSpec]], rel: str, is_dir: bool) -> bool:
    """Git's answer: the deepest ignore file with a matching pattern decides."""
    verdict = False
    for base, spec in rules:
        sub = rel[len(base) + 1:] if base else rel
        result = spec.check_file(sub + "/" if is_dir else sub)
        if result.include is not None:
            verdict = result.include
    return verdict


def shipped_files(root: Path) -> list[str]:
    """Every file and link under `root` that is not ignored, sorted, relative, '/'-separated."""
    root = root.resolve()
    always = pathspec.GitIgnoreSpec.from_lines(ALWAYS_IGNORED)
    out: list[str] = []

    def walk(folder: Path, rel: str, rules: list[tuple[str, pathspec.GitIgnoreSpec]]) -> None:
        rules = rules + [(rel, s) for s in _specs(folder)]
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                path = f"{rel}/{entry.name}" if rel else entry.name
                is_dir = entry.is_dir(follow_symlinks=False)
                if always.match_file(path + "/" if is_dir else path) or _ignored(rules, path, is_dir):
                    continue
                if is_dir:
                    walk(Path(entry.path), path, rules)
                elif entry.is_symlink():
                    # A link leaving the folder would not resolve in the pod: left out.
                    target = Path(entry.path).resolve()
                    if target.is_relative_to(root):
                        out.append(path)
                elif entry.is_file(follow_symlinks=False):
                    out.append(path)

    walk(root, "", [])
    return out


def pack(root: Path) -> Packed:
    """The shipped files of `root` as a reproducible tar.gz."""
    root = root.resolve()
    if not root.is_dir():
        raise WorkdirError(f"workdir {root}: no such folder; set workdir to the folder whose files "
                           "the replicas need, or workdir: false to ship nothing")
    files = shipped_files(root)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in files:
            info = tar.gettarinfo(root / rel, arcname=rel)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            info.mode = 0o755 if info.mode & 0o111 else 0o644
            if info.isreg():
                with open(root / rel, "rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    archive = gzip.compress(raw.getvalue(), compresslevel=9, mtime=0)
    return Packed(archive, tuple(files))


def check_size(packed: Packed, root: Path) -> None:
    size = len(packed.archive) + len(ARCHIVE_KEY)
    if size > CONFIGMAP_LIMIT:
        raise WorkdirTooLarge(
            f"workdir {root}: {len(packed.files)} file(s) pack to {size:,} bytes, more than the "
            f"{CONFIGMAP_LIMIT:,} bytes a ConfigMap holds; list what the replicas do not need in "
            ".shipyardignore, bake the code into the image (and set workdir: false), or put it on "
            "a volume"
        )


def configmap(exp: Experiment, packed: Packed) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": workdir_configmap_name(exp), "namespace": exp.namespace,
                     "labels": {LABEL_EXPERIMENT: exp.name}},
        "binaryData": {ARCHIVE_KEY: base64.b64encode(packed.archive).decode()},
    }


def owner_patch(owner: dict[str, Any]) -> dict[str, Any]:
    """The ownerReferences patch that has the garbage collector delete an object with `owner`."""
    meta = owner["metadata"]
    return {"metadata": {"ownerReferences": [{
        "apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"],
        "uid": meta["uid"], "blockOwnerDeletion": True}]}}
