"""A backup set's manifest.json: Odoo's own manifest keys plus an `erpops` section. Pure: no I/O.

Odoo's database manager writes `odoo_dump`, `db_name`, `version`, `version_info`,
`major_version`, `pg_version` and `modules` into the manifest of its zip backups; a set keeps
them at the top level, so the manifest can go into an Odoo zip unchanged. The `erpops` section
records what is needed to verify and restore the set without trusting anything else:

    "erpops": {
      "format": 1, "set_id": "prod-mfg-20261129T181500Z-3fa2b1", "created_at": "2026-11-29T18:15:00Z",
      "stack": "prod", "erpops_version": "0.1.0", "pg_server_version": "15.18", "pg_server_version_num": 150018,
      "db_name": "mfg", "neutralized": false, "duration_seconds": 12.3,
      "artifacts": [{"name": "dump", "key": "sets/<id>/dump.pgdump.zst", "size": ..., "sha256": ...,
                     "compression": "zstd", "format": "custom", "uncompressed_size": ..., "uncompressed_sha256": ...}],
      "filestore": {"count": 858, "bytes": ..., "files": [{"path": "ab/ab12..", "sha1": .., "sha256": .., "size": ..}]},
      (a file kept in a pack object adds "pack": "filestore/packs/<64 hex>", "offset": ...: its bytes are
      pack[offset:offset + size]; S3 targets pack small files, see erpops.backup.filestore)
      "row_counts": {"res_partner": 42, ..., "mrp_production": null}
    }

manifest.json is written last: a set without one is incomplete and never restorable.
"""

from __future__ import annotations

import itertools
import re
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from erpops.errors import IntegrityError, UsageError

FORMAT = 1
FORMAT_PACKS = 2  # a set with files in pack objects: an erpops that reads only format 1 refuses it, by its format
MANIFEST = "manifest.json"
VERIFY = "verify.json"
IN_PROGRESS = "in-progress.json"
SETS = "sets"
FILESTORE = "filestore"
DUMP_CUSTOM = "dump.pgdump.zst"
DUMP_SQL = "dump.sql.zst"

ROW_COUNT_TABLES = (
    "res_partner", "product_product", "mrp_production", "stock_move", "sale_order", "purchase_order",
    "account_move", "ir_attachment",
)

# Odoo's own rule for database names (odoo.service.db.DB_NAME_RE), which also keeps them safe
# in set ids, storage keys and file names.
DB_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
STACK_RE = re.compile(r"^[a-z][a-z0-9-]{0,40}$")
SET_ID_RE = re.compile(r"^(?P<stack>[a-z][a-z0-9-]*?)-(?P<db>[a-zA-Z0-9][a-zA-Z0-9_.-]+)-"
                       r"(?P<ts>\d{8}T\d{6}Z)-(?P<rand>[0-9a-f]{6})$")
SHA1_PATH_RE = re.compile(r"^(?P<dir>[0-9a-f]{2})/(?P<sha1>[0-9a-f]{40})$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
TS_FORMAT = "%Y%m%dT%H%M%SZ"


def check_db_name(db: str) -> str:
    if not DB_NAME_RE.match(db) or len(db) > 63:
        raise UsageError(f"{db!r} is not a valid database name: use letters, digits, '_', '.', '-' "
                         "(Odoo's rule), at most 63 characters")
    return db


def new_set_id(stack: str, db: str, now: datetime | None = None) -> str:
    """`<stack>-<db>-<YYYYmmddTHHMMSSZ>-<6 hex>`, e.g. prod-mfg-20261129T181500Z-3fa2b1."""
    if not STACK_RE.match(stack):
        raise UsageError(f"{stack!r} is not a valid stack name: use lowercase letters, digits and hyphens")
    check_db_name(db)
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{stack}-{db}-{now.strftime(TS_FORMAT)}-{secrets.token_hex(3)}"


def set_time(set_id: str) -> datetime | None:
    """The creation time encoded in a set id, None when the id is not one of ours."""
    m = SET_ID_RE.match(set_id)
    return datetime.strptime(m["ts"], TS_FORMAT).replace(tzinfo=UTC) if m else None


def set_key(set_id: str, name: str) -> str:
    return f"{SETS}/{set_id}/{name}"


def filestore_key(sha1: str) -> str:
    """Content-addressed: every set that holds the same file shares one object."""
    return f"{FILESTORE}/{sha1[:2]}/{sha1}"


PACKS = f"{FILESTORE}/packs"
PACK_KEY_RE = re.compile(rf"^{PACKS}/[0-9a-f]{{64}}$")


def pack_key(name: str) -> str:
    """A pack object of small filestore files, named by a sha256 over its members (shared like any object)."""
    return f"{PACKS}/{name}"


def utc_iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


# ------------------------------------------------------------------------------------------------
# Odoo's keys
# ------------------------------------------------------------------------------------------------

_VERSION_RE = re.compile(r"^(?:saas~)?(?P<major>\d+)\.(?P<minor>\d+)")


def odoo_version_of(modules: dict[str, str | None]) -> str | None:
    """'17.0' from base's latest_version ('17.0.1.3'); None when base is not installed."""
    base = modules.get("base")
    m = _VERSION_RE.match(base or "")
    return f"{m['major']}.{m['minor']}" if m else None


def pg_version_odoo_style(server_version_num: int) -> str:
    """Odoo writes '%d.%d' % divmod(server_version / 100, 100): 150018 -> '15.0'."""
    major, minor = divmod(server_version_num / 100, 100)
    return f"{int(major)}.{int(minor)}"


def odoo_keys(db_name: str, modules: dict[str, str | None], server_version_num: int) -> dict[str, Any]:
    """The keys Odoo's own dump_db_manifest() writes, derived from the database (Odoo not needed)."""
    version = odoo_version_of(modules)
    if version:
        major, minor = (int(x) for x in version.split("."))
        version_info: list[Any] | None = [major, minor, 0, "final", 0, ""]
    else:
        version_info = None
    return {
        "odoo_dump": "1",
        "db_name": db_name,
        "version": version,
        "version_info": version_info,
        "major_version": version,
        "pg_version": pg_version_odoo_style(server_version_num),
        "modules": dict(sorted(modules.items())),
    }


# ------------------------------------------------------------------------------------------------
# The manifest model
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Artifact:
    name: str
    key: str
    size: int
    sha256: str
    compression: str
    format: str  # "custom" (pg_dump -Fc) or "plain" (SQL, from an Odoo zip)
    uncompressed_size: int | None = None
    uncompressed_sha256: str | None = None
    # A custom-format dump's data blocks, as the backup found them in the stream: where the first begins (the end
    # of the table of contents) and each one's (dump id, size) in archive order. A restore hands each pg_restore
    # just its tables' bytes, with no temp file (erpops.backup.staged); without them it uses one.
    data_start: int | None = None
    data_blocks: tuple[tuple[int, int], ...] | None = None
    # The stored dump's zstd frames: (uncompressed offset, stored offset, sha256 of the frame's stored bytes) each.
    # A restore reads each loader's part with ranged reads and checks every frame it reads.
    frames: tuple[tuple[int, int, str], ...] | None = None


@dataclass(frozen=True)
class FilestoreFile:
    path: str  # "ab/ab12...", as Odoo's ir_attachment.store_fname
    sha1: str
    sha256: str
    size: int
    # The source file's modification time (microseconds since the epoch) when it was read: the next
    # backup takes sha1/sha256 from here without reading a file whose path, size and mtime are unchanged.
    mtime_us: int | None = None
    # Kept in a pack object (pack_key) at this offset instead of an object of its own
    pack: str | None = None
    offset: int | None = None

    @property
    def key(self) -> str:
        """The object holding the file's bytes: its own, or its pack."""
        return self.pack if self.pack is not None else filestore_key(self.sha1)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for optional in ("mtime_us", "pack", "offset"):
            if out[optional] is None:
                del out[optional]
        return out


def _artifact_dict(a: Artifact) -> dict[str, Any]:
    out = asdict(a)
    for optional in ("data_start", "data_blocks", "frames"):  # absent from sets made before they were recorded
        if out[optional] is None:
            del out[optional]
    return out


def _frames(raw: dict[str, Any], ctx: str, problems: list[str]) -> tuple[tuple[int, int, str], ...] | None:
    frames = raw.get("frames")
    if frames is None:
        return None
    rows = frames if isinstance(frames, list) else []
    ok = isinstance(frames, list) and bool(rows) and all(
        isinstance(f, list) and len(f) == 3 and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                                                    for x in f[:2]) and isinstance(f[2], str) and _HEX64.match(f[2])
        for f in rows)
    ok = ok and rows[0][:2] == [0, 0] and all(a[0] < b[0] and a[1] < b[1] for a, b in itertools.pairwise(rows))
    size, total = raw.get("size"), raw.get("uncompressed_size")
    ok = ok and (not isinstance(size, int) or rows[-1][1] < max(size, 1)) and (
        not isinstance(total, int) or rows[-1][0] <= total)
    if not ok:
        problems.append(f"{ctx}frames: expected [uncompressed offset, stored offset, sha256] rows starting at [0, 0], "
                        f"both offsets increasing and inside the artifact, got {str(frames)[:80]}")
        return None
    return tuple((f[0], f[1], f[2]) for f in rows)


def _data_blocks(raw: dict[str, Any], ctx: str,
                 problems: list[str]) -> tuple[int | None, tuple[tuple[int, int], ...] | None]:
    start, blocks = raw.get("data_start"), raw.get("data_blocks")
    if start is None and blocks is None:
        return None, None
    pairs = blocks if isinstance(blocks, list) else []
    ok = (isinstance(start, int) and not isinstance(start, bool) and start > 0 and isinstance(blocks, list)
          and all(isinstance(b, list) and len(b) == 2 and all(isinstance(x, int) and not isinstance(x, bool)
                                                            and x > 0 for x in b) for b in pairs))
    total = raw.get("uncompressed_size")
    if ok and isinstance(total, int) and start + sum(b[1] for b in pairs) != total:
        problems.append(f"{ctx}data_blocks: data_start plus the block sizes is not uncompressed_size "
                        f"{total}: the manifest was edited or damaged")
        return None, None
    if not ok:
        problems.append(f"{ctx}data_start/data_blocks: expected a positive integer and a list of [dump id, size] "
                        f"pairs of positive integers, got {start!r} and {str(blocks)[:80]}")
        return None, None
    return start, tuple((b[0], b[1]) for b in pairs)


@dataclass(frozen=True)
class Manifest:
    odoo: dict[str, Any]
    set_id: str
    created_at: str
    stack: str
    db_name: str
    erpops_version: str
    pg_server_version: str | None
    pg_server_version_num: int | None
    artifacts: list[Artifact]
    filestore: list[FilestoreFile]
    row_counts: dict[str, int | None]
    duration_seconds: float
    neutralized: bool
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def dump(self) -> Artifact:
        return next(a for a in self.artifacts if a.name == "dump")

    @property
    def filestore_bytes(self) -> int:
        return sum(f.size for f in self.filestore)

    @property
    def created(self) -> datetime:
        return parse_utc(self.created_at)

    @property
    def odoo_version(self) -> str | None:
        return self.odoo.get("major_version") or self.odoo.get("version")

    @property
    def stored_bytes(self) -> int:
        return sum(a.size for a in self.artifacts)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.odoo,
            "erpops": {
                "format": FORMAT_PACKS if any(f.pack is not None for f in self.filestore) else FORMAT,
                "set_id": self.set_id,
                "created_at": self.created_at,
                "stack": self.stack,
                "db_name": self.db_name,
                "erpops_version": self.erpops_version,
                "pg_server_version": self.pg_server_version,
                "pg_server_version_num": self.pg_server_version_num,
                "neutralized": self.neutralized,
                "duration_seconds": self.duration_seconds,
                "source": self.source,
                "artifacts": [_artifact_dict(a) for a in self.artifacts],
                "filestore": {
                    "count": len(self.filestore),
                    "bytes": self.filestore_bytes,
                    "files": [f.to_dict() for f in self.filestore],
                },
                "row_counts": self.row_counts,
            },
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "manifest.json") -> Manifest:
        """Parse and check a manifest; every problem found raises one IntegrityError naming them all."""
        problems: list[str] = []
        if not isinstance(data, dict):
            raise IntegrityError(f"{where} is not a JSON object")
        section = data.get("erpops")
        if not isinstance(section, dict):
            raise IntegrityError(f"{where} has no 'erpops' section: not a set written by erpops")
        if section.get("format") not in (FORMAT, FORMAT_PACKS):
            problems.append(f"format {section.get('format')!r} is not {FORMAT} or {FORMAT_PACKS}: written by another "
                            "erpops version")

        def need(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], ctx: str) -> Any:
            value = obj.get(key)
            if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
                problems.append(f"{ctx}{key}: expected {getattr(kind, '__name__', kind)}, got {value!r}")
                return None
            return value

        artifacts: list[Artifact] = []
        for i, raw in enumerate(section.get("artifacts") or []):
            ctx = f"artifacts[{i}]."
            if not isinstance(raw, dict):
                problems.append(f"{ctx[:-1]} is not an object")
                continue
            sha = need(raw, "sha256", str, ctx)
            if sha is not None and not _HEX64.match(sha):
                problems.append(f"{ctx}sha256 {sha!r} is not 64 hex digits")
            size = need(raw, "size", int, ctx)
            name, key = need(raw, "name", str, ctx), need(raw, "key", str, ctx)
            fmt = raw.get("format")
            if fmt not in ("custom", "plain"):
                problems.append(f"{ctx}format {fmt!r} is not custom or plain")
            if raw.get("compression") not in ("zstd", "none"):
                problems.append(f"{ctx}compression {raw.get('compression')!r} is not zstd or none")
            start, blocks = _data_blocks(raw, ctx, problems)
            frames = _frames(raw, ctx, problems)
            if None not in (sha, size, name, key) and fmt in ("custom", "plain"):
                artifacts.append(Artifact(name, key, size, sha, raw["compression"], fmt,
                                          raw.get("uncompressed_size"), raw.get("uncompressed_sha256"), start, blocks,
                                          frames))
        if not any(a.name == "dump" for a in artifacts):
            problems.append("artifacts: no 'dump' artifact")

        fs = section.get("filestore") or {}
        files: list[FilestoreFile] = []
        for i, raw in enumerate(fs.get("files") or [] if isinstance(fs, dict) else []):
            ctx = f"filestore.files[{i}]."
            if not isinstance(raw, dict):
                problems.append(f"{ctx[:-1]} is not an object")
                continue
            path, sha1 = raw.get("path"), raw.get("sha1")
            m = SHA1_PATH_RE.match(path or "") if isinstance(path, str) else None
            if m is None or m["sha1"] != sha1 or m["dir"] != sha1[:2]:
                problems.append(f"{ctx}path {path!r} does not match sha1 {sha1!r} (expected xx/<sha1>)")
                continue
            sha256, size = need(raw, "sha256", str, ctx), need(raw, "size", int, ctx)
            mtime = raw.get("mtime_us")
            pack, offset = raw.get("pack"), raw.get("offset")
            if (pack, offset) != (None, None) and not (
                    isinstance(pack, str) and PACK_KEY_RE.match(pack) and isinstance(offset, int) and offset >= 0):
                problems.append(f"{ctx}pack {pack!r} at offset {offset!r} is not a pack object "
                                f"({PACKS}/<64 hex>) and an offset >= 0")
                continue
            if sha256 is not None and size is not None:
                files.append(FilestoreFile(path, sha1, sha256, size, mtime if isinstance(mtime, int) else None,
                                           pack, offset))
        if isinstance(fs, dict) and fs.get("count") not in (None, len(files)) and not problems:
            problems.append(f"filestore.count {fs.get('count')} does not match the {len(files)} files listed")

        set_id = need(section, "set_id", str, "")
        created_at = need(section, "created_at", str, "")
        if created_at is not None:
            try:
                parse_utc(created_at)
            except ValueError:
                problems.append(f"created_at {created_at!r} is not UTC ISO 8601 (YYYY-mm-ddTHH:MM:SSZ)")
        counts = section.get("row_counts") or {}
        if not isinstance(counts, dict) or any(v is not None and not isinstance(v, int) for v in counts.values()):
            problems.append(f"row_counts must map table -> integer or null, got {counts!r}")
            counts = {}
        if problems:
            raise IntegrityError(f"{where} is invalid:\n" + "\n".join(f"  - {p}" for p in problems))
        odoo = {k: v for k, v in data.items() if k != "erpops"}
        return cls(
            odoo=odoo, set_id=set_id, created_at=created_at, stack=str(section.get("stack") or ""),
            db_name=str(section.get("db_name") or data.get("db_name") or ""),
            erpops_version=str(section.get("erpops_version") or ""),
            pg_server_version=section.get("pg_server_version"),
            pg_server_version_num=section.get("pg_server_version_num"),
            artifacts=artifacts, filestore=files, row_counts=counts,
            duration_seconds=float(section.get("duration_seconds") or 0.0),
            neutralized=bool(section.get("neutralized")), source=dict(section.get("source") or {}),
        )


# ------------------------------------------------------------------------------------------------
# Restore compatibility (pure, so the rules are unit-tested)
# ------------------------------------------------------------------------------------------------


def restore_problems(
    manifest: Manifest,
    *,
    server_version_num: int,
    odoo_version: str | None = None,
    odoo_modules: set[str] | None = None,
) -> list[str]:
    """Why this set cannot be restored onto this server / Odoo image; empty when it can."""
    problems = []
    dump_major = (manifest.pg_server_version_num or 0) // 10000
    if not dump_major and manifest.odoo.get("pg_version"):
        dump_major = int(str(manifest.odoo["pg_version"]).split(".")[0])
    server_major = server_version_num // 10000
    if dump_major and server_major < dump_major:
        problems.append(f"PostgreSQL server is {server_major}, the dump comes from {dump_major}: restore onto "
                        f"PostgreSQL {dump_major} or newer")
    if odoo_version is not None:
        want = re.match(r"^(?:saas~)?(?P<major>\d+)(?:\.\d+)?", odoo_version)
        have = manifest.odoo_version
        if want is None:
            problems.append(f"--odoo-version {odoo_version!r} is not a version like 17.0")
        elif have is None:
            problems.append(f"the set records no Odoo version (base not installed?), but --odoo-version {odoo_version} "
                            "was asked: leave --odoo-version out to restore anyway")
        elif have.split(".")[0] != want["major"]:
            problems.append(f"the set is Odoo {have}, the target image is Odoo {odoo_version}: majors must match "
                            f"(upgrade the database with OpenUpgrade/odoo-upgrade first, or use an Odoo "
                            f"{have.split('.')[0]} image)")
    if odoo_modules is not None:
        missing = sorted(set(manifest.odoo.get("modules") or {}) - odoo_modules)
        if missing:
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            problems.append(f"{len(missing)} installed module(s) are not available in the target image: {shown}")
    return problems


def row_count_problems(expected: dict[str, int | None], actual: dict[str, int | None]) -> list[str]:
    """Tables whose restored row count differs from the manifest's (tables absent in both agree)."""
    problems = []
    for table, want in sorted(expected.items()):
        got = actual.get(table)
        if want != got:
            problems.append(f"{table}: {got if got is not None else 'missing'} rows restored, the set recorded "
                            f"{want if want is not None else 'no table'}")
    return problems
