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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pathspec

from shipyard.api.vocab import LABEL_EXPERIMENT
from shipyard.render.runtime import ARCHIVE_KEY, workdir_configmap_name
from shipyard.spec import Experiment

IGNORE_FILES = (".gitignore", ".shipyardignore")
ALWAYS_IGNORED = (".git/",)
# A ConfigMap holds at most 1 MiB (keys and values; the API server's MaxConfigMapSize).
CONFIGMAP_LIMIT = 1024 * 1024
# Files read past this many bytes could fit only at a ratio above 64:1, which code never
# packs to: stop reading (a dataset or a .venv in the folder), rather than compress it all.
RAW_LIMIT = 64 * CONFIGMAP_LIMIT


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


def iter_shipped_files(root: Path) -> Iterator[str]:
    """Every file and link under `root` that is not ignored, in sorted order, relative,
    '/'-separated; lazily, so a packer that must stop early never walks the rest."""
    root = root.resolve()
    always = pathspec.GitIgnoreSpec.from_lines(ALWAYS_IGNORED)

    def walk(folder: Path, rel: str, rules: list[tuple[str, pathspec.GitIgnoreSpec]]
             ) -> Iterator[str]:
        rules = rules + [(rel, s) for s in _specs(folder)]
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            path = f"{rel}/{entry.name}" if rel else entry.name
            is_dir = entry.is_dir(follow_symlinks=False)
            if always.match_file(path + "/" if is_dir else path) or _ignored(rules, path, is_dir):
                continue
            if is_dir:
                yield from walk(Path(entry.path), path, rules)
            elif entry.is_symlink():
                # A link leaving the folder would not resolve in the pod: left out.
                if Path(entry.path).resolve().is_relative_to(root):
                    yield path
            elif entry.is_file(follow_symlinks=False):
                yield path

    yield from walk(root, "", [])


def shipped_files(root: Path) -> list[str]:
    """Every file and link under `root` that is not ignored, sorted, relative, '/'-separated."""
    return list(iter_shipped_files(root))


class _TooLarge(Exception):
    """Raised inside the tar writer to stop packing; turned into WorkdirTooLarge."""


class _Budget:
    """The running sizes of a pack, checked after every chunk the tar writer reads."""

    def __init__(self, out: io.BytesIO, limit: int, raw_limit: int) -> None:
        self.out, self.limit, self.raw_limit = out, limit, raw_limit
        self.raw = 0

    @property
    def compressed(self) -> int:
        # What zlib has emitted so far (it holds back at most a block): a lower bound.
        return self.out.tell() + len(ARCHIVE_KEY)

    def check(self) -> None:
        if self.compressed > self.limit or self.raw > self.raw_limit:
            raise _TooLarge


class _Metered:
    """A file the tar writer reads chunk by chunk, the budget checked after each."""

    def __init__(self, handle: BinaryIO, budget: _Budget) -> None:
        self.handle, self.budget = handle, budget

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size if 0 < size <= _CHUNK else _CHUNK)
        self.budget.raw += len(data)
        self.budget.check()
        return data


_CHUNK = 64 * 1024


def pack(root: Path, limit: int = CONFIGMAP_LIMIT, raw_limit: int = RAW_LIMIT) -> Packed:
    """The shipped files of `root` as a reproducible tar.gz, at most `limit` bytes (with
    its ConfigMap key). Sizes are checked as it goes: a folder holding a dataset or a
    .venv is refused as soon as the archive passes `limit`, or the files read pass
    `raw_limit` (a file too big is refused from its size, unread), never after building
    the whole archive in memory."""
    root = root.resolve()
    if not root.is_dir():
        raise WorkdirError(f"workdir {root}: no such folder; set workdir to the folder whose files "
                           "the replicas need, or workdir: false to ship nothing")
    out = io.BytesIO()
    budget = _Budget(out, limit, raw_limit)
    files: list[str] = []
    started, rel = 0, ""
    try:
        with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9, mtime=0, filename="") as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for rel in iter_shipped_files(root):
                started += 1  # for the error: which file it stopped at
                info = tar.gettarinfo(root / rel, arcname=rel)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0
                info.mode = 0o755 if info.mode & 0o111 else 0o644
                if info.isreg():
                    if budget.raw + info.size > raw_limit:
                        budget.raw += info.size
                        raise _TooLarge
                    with open(root / rel, "rb") as handle:
                        tar.addfile(info, _Metered(handle, budget))
                else:
                    tar.addfile(info)
                files.append(rel)
                budget.check()
    except _TooLarge:
        raise WorkdirTooLarge(_stopped(root, rel, started, budget)) from None
    packed = Packed(out.getvalue(), tuple(files))
    check_size(packed, root, limit)
    return packed


ALTERNATIVES = ("list what the replicas do not need in .shipyardignore, bake the code into the "
                "image (and set workdir: false), or put it on a volume")


def _stopped(root: Path, rel: str, started: int, budget: _Budget) -> str:
    if budget.raw > budget.raw_limit:
        what = (f"the files read come to more than {budget.raw_limit:,} bytes before compression "
                f"({budget.raw:,} with {rel}), far past the {budget.limit:,} bytes a ConfigMap "
                "holds")
    else:
        what = (f"the files pack to more than the {budget.limit:,} bytes a ConfigMap holds "
                f"({budget.compressed:,} bytes compressed so far, {budget.raw:,} read)")
    return f"workdir {root}: {what}; stopped at file {started}, {rel}; {ALTERNATIVES}"


def check_size(packed: Packed, root: Path, limit: int = CONFIGMAP_LIMIT) -> None:
    size = len(packed.archive) + len(ARCHIVE_KEY)
    if size > limit:
        raise WorkdirTooLarge(
            f"workdir {root}: {len(packed.files)} file(s) pack to {size:,} bytes, more than the "
            f"{limit:,} bytes a ConfigMap holds; {ALTERNATIVES}"
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
