"""Bundles as files an admin downloads and uploads: an installed bundle with
the admin's customisations as a zip, and a zip (or a folder's files)
unpacked safely into a folder that `loom pack validate` checks before
anything is installed."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path, PurePosixPath
from typing import Iterable

from loomcrm.metadata.bundle import Problem, bundle_files, dump_json
from loomcrm.runtime.install import NAMED, bundle_from_json, export_bundle

MAX_FILES = 2000
MAX_UNPACKED = 20_000_000        # bytes, all files together: a zip bomb stops here
MAX_FILE = 5_000_000


class UploadProblem(ValueError):
    """The upload itself is unusable (not a zip, too large, a hostile path)."""


def export_zip(engine, name: str) -> bytes:
    """The installed bundle `name`, with the admin's customisations, as a zip
    of a bundle folder (`<name>/bundle.json`, `<name>/objects/...`)."""
    bundle = bundle_from_json(export_bundle(engine, name))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for rel, data in bundle_files(bundle).items():
            archive.writestr(f"{name}/{rel}", dump_json(data))
    return out.getvalue()


OWN = "custom"     # the bundle of what admins built themselves


def export_own(engine) -> bytes:
    """What admins and managers built outside every installed bundle
    (objects, workflows, roles, reports, dashboards), as a zip of a bundle named `custom` that requires the installed
    ones it may point at."""
    import sqlalchemy as sa

    from loomcrm.metadata.model import Bundle, BundleManifest
    from loomcrm.metadata.versions import Snapshot, VersionStore
    from loomcrm.platform import systemdb

    with engine.connect() as conn:
        rows = conn.execute(sa.select(systemdb.bundles.c.name, systemdb.bundles.c.version,
                                      systemdb.bundles.c.pristine)).all()
        _, published = VersionStore().published(conn)
    shipped = [Snapshot.from_json(r.pristine) for r in rows]
    uids = {o.uid for s in shipped for o in s.objects}
    named = {}
    for folder in NAMED:
        theirs = {x.name for s in shipped for x in getattr(s, folder)}
        named[folder] = [x for x in getattr(published, folder) if x.name not in theirs]
    bundle = Bundle(manifest=BundleManifest(format="loom/1", name=OWN, version="1.0.0",
                                            requires={r.name: f">={r.version.split('-')[0]}" for r in rows}),
                    objects=[o for o in published.objects if o.uid not in uids], **named)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for rel, data in bundle_files(bundle).items():
            archive.writestr(f"{OWN}/{rel}", dump_json(data))
    return out.getvalue()


def _safe(rel: str) -> PurePosixPath:
    path = PurePosixPath(rel.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not path.parts or any(p.startswith("~") for p in path.parts):
        raise UploadProblem(f"{rel[:200]}: a path outside the bundle")
    return path


def _strip_top(paths: list[PurePosixPath]) -> int:
    """How many leading folders all paths share above bundle.json."""
    manifests = [p for p in paths if p.name == "bundle.json"]
    if not manifests:
        return 0
    return len(min(manifests, key=lambda p: len(p.parts)).parts) - 1


def unpack(files: Iterable[tuple[str, bytes]], folder: Path) -> None:
    """Write uploaded (relative path, content) pairs under `folder`, the
    bundle's own folder being the one that holds bundle.json."""
    items = [(_safe(rel), body) for rel, body in files]
    if len(items) > MAX_FILES:
        raise UploadProblem(f"more than {MAX_FILES} files")
    if sum(len(body) for _, body in items) > MAX_UNPACKED:
        raise UploadProblem(f"more than {MAX_UNPACKED // 1_000_000} MB of files")
    top = _strip_top([p for p, _ in items])
    for path, body in items:
        if len(path.parts) <= top:
            continue
        target = folder.joinpath(*path.parts[top:])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)


def zip_members(raw: bytes) -> list[tuple[str, bytes]]:
    """The files of an uploaded zip, read with limits (no symlinks, no
    member larger than MAX_FILE, no more than MAX_UNPACKED in all)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
    except zipfile.BadZipFile:
        raise UploadProblem("not a zip file") from None
    members, total = [], 0
    with archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        if len(infos) > MAX_FILES:
            raise UploadProblem(f"more than {MAX_FILES} files")
        for info in infos:
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise UploadProblem(f"{info.filename[:200]}: a symbolic link")
            if info.file_size > MAX_FILE:
                raise UploadProblem(f"{info.filename[:200]}: larger than {MAX_FILE // 1_000_000} MB")
            total += info.file_size
            if total > MAX_UNPACKED:
                raise UploadProblem(f"more than {MAX_UNPACKED // 1_000_000} MB unpacked")
            with archive.open(info) as member:
                body = member.read(MAX_FILE + 1)      # the header may lie about the size
            if len(body) > MAX_FILE:
                raise UploadProblem(f"{info.filename[:200]}: larger than {MAX_FILE // 1_000_000} MB")
            members.append((info.filename, body))
    return members


def problem_rows(problems: list[Problem]) -> list[dict[str, str]]:
    return [{"file": p.file, "path": p.path, "message": p.message, "code": p.code} for p in problems[:200]]
