"""Where backup sets live: an S3 prefix (`s3://bucket/prefix`) or a local directory (`file:///path`).

Both targets speak the same small API over keys relative to the target's root
(`sets/<id>/manifest.json`, `filestore/ab/ab12...`). Writes are all-or-nothing:

- S3: streams above one part go up as multipart uploads, part by part with bounded memory
  (part size x (concurrency + 1) bytes at most); any exception aborts the upload, so no
  orphan multipart upload stays behind, and `before_commit` runs before the upload is
  completed (the caller's last chance to refuse: pg_dump's exit code, a sha1 check).
- file: bytes go to a hidden temp file beside the key, fsynced, then renamed into place.

Credentials come from boto3's standard chain only (environment, profile, instance role); they
are never logged or put in a message. A rejected credential raises CredentialsError (exit 3).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

from erpops.errors import BackupError, CredentialsError, ErpopsError, ServiceError, UsageError

log = logging.getLogger(__name__)

MiB = 1024 * 1024
DEFAULT_PART_SIZE = 8 * MiB
MAX_PART_SIZE = 64 * MiB
S3_MIN_PART_SIZE = 5 * MiB
S3_MAX_PARTS = 10_000
# The part size doubles every 1000 parts (8 -> 16 -> 32 -> 64 MiB): ~500 GB fits in 10,000 parts.
_PARTS_PER_SIZE_STEP = 1000
# Object bytes one S3 target holds in memory at once, over every upload running on it (the dump's
# parts in flight, each filestore worker's buffer): whatever the part size has grown to and however
# many workers run, uploads wait for room rather than allocate more. With the interpreter, boto3
# and the dump pipeline (~110 MB measured) the process tree stays under 300 MB.
MEMORY_BUDGET = 144 * MiB
CHUNK = 1 * MiB
_PART_MARK = ".part-"

_CREDENTIAL_CODES = {
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "TokenRefreshRequired",
    "InvalidClientTokenId", "UnrecognizedClientException", "AuthorizationHeaderMalformed",
}


class ByteBudget:
    """A counting semaphore of bytes; one acquire larger than the whole budget waits for it to be empty."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0
        self._cond = threading.Condition()

    def acquire(self, n: int) -> None:
        with self._cond:
            while self.used and self.used + n > self.limit:
                self._cond.wait()
            self.used += n
            self.peak = max(self.peak, self.used)

    def release(self, n: int) -> None:
        with self._cond:
            self.used -= n
            self._cond.notify_all()


class Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime


@dataclass(frozen=True)
class IncompleteUpload:
    key: str
    upload_id: str
    initiated: datetime


def read_full(reader: Reader, size: int) -> bytes:
    """Up to `size` bytes, fewer only at EOF (pipes and decompressors return short reads)."""
    chunks: list[bytes] = []
    want = size
    while want > 0:
        data = reader.read(min(want, 4 * MiB))
        if not data:
            break
        chunks.append(data)
        want -= len(data)
    return b"".join(chunks)


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise UsageError(f"invalid storage key {key!r}")
    long = next((p for p in parts if len(p.encode()) > 200), None)
    if long is not None:
        # Filesystems refuse names over 255 bytes (with a traceback, unchecked); no erpops name is that long.
        raise UsageError(f"{long[:40]}... is {len(long.encode())} bytes long: no backup set or object has a name "
                         "longer than 200 bytes; check the set id (`erpops list`)")
    return key


class Target(ABC):
    """A backup target. Keys are '/'-separated paths relative to the target's root."""

    url: str

    @abstractmethod
    def put_stream(
        self,
        key: str,
        reader: Reader,
        *,
        before_commit: Callable[[], None] | None = None,
        on_bytes: Callable[[int], None] | None = None,
        digest: bool = True,
        durable: bool = True,
    ) -> tuple[int, str]:
        """Store everything `reader` yields under key; returns (size, sha256 hex) of what was stored.

        digest=False: the caller hashes the bytes itself (one hash per byte); the sha256 returned is "".
        durable=False: the object may stay in the page cache until flush() (file targets: one syncfs
        for a whole backup instead of two fsyncs per object); S3 objects are durable when stored.
        """

    def flush(self) -> None:
        """Make every object stored with durable=False durable (called before a manifest is written)."""
        return  # durable when stored (S3)

    @abstractmethod
    def get_stream(self, key: str) -> contextlib.AbstractContextManager[Reader]:
        """A reader of the object's bytes; UsageError when the key does not exist."""

    @abstractmethod
    def get_range(self, key: str, offset: int, length: int) -> contextlib.AbstractContextManager[Reader]:
        """A reader of `length` bytes of the object from `offset` (fewer when the object is shorter: the
        caller's size check tells); UsageError when the key does not exist."""

    @abstractmethod
    def head(self, key: str) -> int | None:
        """Size of the object, None when absent."""

    @abstractmethod
    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every complete object whose key starts with prefix."""

    @abstractmethod
    def delete_many(self, keys: list[str]) -> None: ...

    @abstractmethod
    def list_incomplete_uploads(self, prefix: str = "") -> list[IncompleteUpload]: ...

    @abstractmethod
    def abort_upload(self, upload: IncompleteUpload) -> None: ...

    @abstractmethod
    def check(self, *, create: bool = False) -> None:
        """Raise a clear error now if the target cannot be reached, read (or created, for writers)."""

    # -- built on the primitives ------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes, *, digest: bool = True, durable: bool = True) -> tuple[int, str]:
        return self.put_stream(key, _BytesReader(data), digest=digest, durable=durable)

    def get_bytes(self, key: str) -> bytes:
        with self.get_stream(key) as reader:
            return read_full(reader, 1 << 62)

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        return (o.key for o in self.list_objects(prefix))

    def delete(self, key: str) -> None:
        self.delete_many([key])

    def abort_incomplete(self, prefix: str = "", older_than: timedelta | None = None) -> list[IncompleteUpload]:
        """Abort unfinished uploads under prefix (only those started before now - older_than)."""
        cutoff = datetime.now(UTC) - older_than if older_than else None
        aborted = []
        for upload in self.list_incomplete_uploads(prefix):
            if cutoff is None or upload.initiated < cutoff:
                self.abort_upload(upload)
                aborted.append(upload)
        return aborted

    def child(self, key: str) -> str:
        return f"{self.url.rstrip('/')}/{key}"


class Window:
    """At most `length` bytes of reader, from where it stands."""

    def __init__(self, reader: Reader, length: int) -> None:
        self._reader = reader
        self.left = length

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        want = self.left if size is None or size < 0 else min(size, self.left)
        data = self._reader.read(want)
        self.left -= len(data)
        return data


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size is None or size < 0 else self._pos + size
        out = bytes(self._data[self._pos:end])
        self._pos += len(out)
        return out


# ------------------------------------------------------------------------------------------------
# file:///path
# ------------------------------------------------------------------------------------------------


class FileTarget(Target):
    # A local file costs no request: small filestore files stay one file each (restorable with cp)
    packs_small_files = False

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"file://{root}"
        self._unsynced = False
        # Directories this target made or found: a mkdir of one that exists still takes its parent's lock,
        # and 8 threads storing filestore files spun on filestore/'s for seconds of system CPU
        self._dirs: set[Path] = set()

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def _create(self, path: Path) -> BinaryIO:
        """path opened for writing; its directory made first where this target has not seen it yet."""
        if path.parent not in self._dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path.parent)
        try:
            return open(path, "wb")
        except FileNotFoundError:  # the directory emptied and removed since (a prune by another run)
            path.parent.mkdir(parents=True, exist_ok=True)
            return open(path, "wb")

    def check(self, *, create: bool = False) -> None:
        if create:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ServiceError(f"cannot create backup directory {self.root}: {exc.strerror}") from exc
        if not self.root.is_dir():
            raise UsageError(f"backup target {self.url} does not exist (no directory {self.root})")
        if create and not os.access(self.root, os.W_OK | os.X_OK):
            raise ServiceError(f"backup directory {self.root} is not writable")

    def put_stream(
        self,
        key: str,
        reader: Reader,
        *,
        before_commit: Callable[[], None] | None = None,
        on_bytes: Callable[[int], None] | None = None,
        digest: bool = True,
        durable: bool = True,
    ) -> tuple[int, str]:
        path = self._path(key)
        tmp = path.with_name(f".{path.name}{_PART_MARK}{secrets.token_hex(4)}")
        sha = hashlib.sha256() if digest else None
        size = 0
        try:
            with self._create(tmp) as out:
                while True:
                    data = reader.read(CHUNK)
                    if not data:
                        break
                    out.write(data)
                    if sha is not None:
                        sha.update(data)
                    size += len(data)
                    if on_bytes:
                        on_bytes(len(data))
                out.flush()
                if durable:
                    os.fsync(out.fileno())
            if before_commit:
                before_commit()
            os.replace(tmp, path)
            if durable:
                _fsync_dir(path.parent)
            else:
                self._unsynced = True
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise BackupError(f"writing {self.child(key)} failed: {exc}; the partial file was removed") from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return size, sha.hexdigest() if sha is not None else ""

    def flush(self) -> None:
        """One syncfs(2) of the target's filesystem: the data and the renames of every deferred object."""
        if not self._unsynced:
            return
        try:
            _syncfs(self.root)
        except OSError as exc:
            raise BackupError(f"flushing {self.url} to disk failed: {exc}") from exc
        self._unsynced = False

    @contextlib.contextmanager
    def get_stream(self, key: str) -> Iterator[Reader]:
        try:
            fh = open(self._path(key), "rb")  # noqa: SIM115 - closed by the context manager below
        except FileNotFoundError:
            raise UsageError(f"{self.child(key)} does not exist") from None
        with fh:
            yield fh

    @contextlib.contextmanager
    def get_range(self, key: str, offset: int, length: int) -> Iterator[Reader]:
        with self.get_stream(key) as fh:
            fh.seek(offset)  # type: ignore[attr-defined]
            yield Window(fh, length)

    def head(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if not self.root.is_dir():
            return
        # Walk only the directory the prefix names, then filter by the rest of the prefix.
        base = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in sorted(filenames):
                if _PART_MARK in name and name.startswith("."):
                    continue
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    st = full.stat()
                    yield ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def delete_many(self, keys: list[str]) -> None:
        for key in keys:
            path = self._path(key)
            path.unlink(missing_ok=True)
            # Drop emptied directories up to the root, so a deleted set leaves no husk.
            parent = path.parent
            while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                self._dirs.discard(parent)
                parent = parent.parent

    def list_incomplete_uploads(self, prefix: str = "") -> list[IncompleteUpload]:
        found: list[IncompleteUpload] = []
        base = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not base.is_dir():
            return found
        for path in base.rglob(f".*{_PART_MARK}*"):
            name = path.name[1:].split(_PART_MARK)[0]
            key = path.with_name(name).relative_to(self.root).as_posix()
            if key.startswith(prefix):
                found.append(IncompleteUpload(key, path.name, datetime.fromtimestamp(path.stat().st_mtime, UTC)))
        return found

    def abort_upload(self, upload: IncompleteUpload) -> None:
        (self._path(upload.key).parent / upload.upload_id).unlink(missing_ok=True)


def _syncfs(path: Path) -> None:
    """syncfs(2) on path's filesystem (Linux); os.sync() where libc has no syncfs."""
    import ctypes
    import ctypes.util

    fd = os.open(path, os.O_RDONLY)
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = getattr(libc, "syncfs", None)
        if fn is None:
            os.sync()
        elif fn(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------------
# s3://bucket/prefix
# ------------------------------------------------------------------------------------------------


def translate_s3_error(exc: BaseException, what: str) -> Exception:
    """A boto3/botocore exception as an erpops error that says what to fix (never the secret)."""
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
        ReadTimeoutError,
    )

    fix = ("check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), AWS_PROFILE or the "
           "instance role")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return CredentialsError(f"{what}: no usable S3 credentials found ({type(exc).__name__}); {fix}")
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _CREDENTIAL_CODES:
            return CredentialsError(f"{what}: S3 rejected the credentials ({code}); {fix}")
        if code in ("AccessDenied", "403", "Forbidden") or status == 403:
            return CredentialsError(
                f"{what}: access denied by S3 ({code or status}): the credentials lack permission on this "
                f"bucket/prefix, or are wrong; {fix}")
        if code in ("NoSuchBucket",):
            return UsageError(f"{what}: the bucket does not exist ({code}): create it or fix --target")
        if code in ("NoSuchKey", "404", "NotFound"):
            return UsageError(f"{what}: not found")
        return ServiceError(f"{what}: S3 error {code or status}: {err.get('Message', '')}".rstrip(": "))
    if isinstance(exc, EndpointConnectionError | ConnectionClosedError | ConnectTimeoutError | ReadTimeoutError):
        return ServiceError(f"{what}: cannot reach the S3 endpoint ({exc})")
    return ServiceError(f"{what}: {type(exc).__name__}: {exc}")


def _is_boto_error(exc: BaseException) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, BotoCoreError | ClientError)


class _S3Body:
    """A get_object body whose network errors surface as erpops errors."""

    def __init__(self, body: Any, what: str) -> None:
        self._body = body
        self._what = what

    def read(self, size: int = -1) -> bytes:
        try:
            return self._body.read(None if size is None or size < 0 else size)
        except Exception as exc:
            if _is_boto_error(exc) or isinstance(exc, OSError) or "urllib3" in type(exc).__module__:
                raise translate_s3_error(exc, f"reading {self._what}") from exc
            raise



def s3_client(endpoint_url: str | None, region: str | None, *, max_attempts: int, pool: int) -> Any:
    """A boto3 S3 client as erpops uses it everywhere: standard retries, bounded timeouts, a pool for `pool`
    threads; off AWS (MinIO, Ceph, test endpoints) path-style addressing and no optional checksum trailers
    (older S3-compatible servers reject them), and never a probe of the EC2 metadata address."""
    import boto3
    from botocore.config import Config

    options: dict[str, Any] = {"retries": {"max_attempts": max_attempts, "mode": "standard"},
                               "connect_timeout": 10, "read_timeout": 120, "max_pool_connections": pool}
    if endpoint_url:
        os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
        options["s3"] = {"addressing_style": "path"}
        options["request_checksum_calculation"] = "when_required"
        options["response_checksum_validation"] = "when_required"
    session = boto3.session.Session(region_name=region)
    return session.client("s3", endpoint_url=endpoint_url, config=Config(**options))

class S3Target(Target):
    # Every object is a request, and each costs Python work (signing, parsing) worth many KiB of hashing:
    # small filestore files are stored together in pack objects (erpops.backup.filestore)
    packs_small_files = True

    def __init__(
        self,
        bucket: str,
        prefix: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        sse: str | None = None,
        kms_key_id: str | None = None,
        storage_class: str | None = None,
        part_size: int = DEFAULT_PART_SIZE,
        concurrency: int = 4,
        max_attempts: int = 3,
        client: Any = None,
    ) -> None:
        if sse not in (None, "AES256", "aws:kms"):
            raise UsageError(f"--sse {sse!r} is not supported: use AES256 or aws:kms")
        if not S3_MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise UsageError(f"part size {part_size} must be between 5 MiB and 64 MiB")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        self.region = region
        self.sse = sse
        self.kms_key_id = kms_key_id
        self.storage_class = storage_class
        self.part_size = part_size
        self.concurrency = max(1, concurrency)
        self.max_attempts = max_attempts
        self._client = client
        self._client_lock = threading.Lock()
        self.budget = ByteBudget(max(MEMORY_BUDGET, MAX_PART_SIZE))

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = s3_client(self.endpoint_url, self.region, max_attempts=self.max_attempts,
                                         pool=max(10, self.concurrency * 2 + 8))
            return self._client

    def _key(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _rel(self, full: str) -> str:
        return full[len(self.prefix) + 1:] if self.prefix else full

    def _call(self, op: str, what: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, op)(Bucket=self.bucket, **kwargs)
        except Exception as exc:
            if _is_boto_error(exc):
                raise translate_s3_error(exc, what) from exc
            raise

    def _write_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {}
        if self.sse:
            args["ServerSideEncryption"] = self.sse
            if self.sse == "aws:kms" and self.kms_key_id:
                args["SSEKMSKeyId"] = self.kms_key_id
        if self.storage_class:
            args["StorageClass"] = self.storage_class
        return args

    # -- API --------------------------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes, *, digest: bool = True, durable: bool = True) -> tuple[int, str]:
        """Bytes already in memory (a pack, a manifest): one PUT of `data` itself, no copy through the part reader;
        its size counts in the budget while it is sent. Larger than a part: put_stream."""
        if len(data) >= self.part_size:
            return super().put_bytes(key, data, digest=digest, durable=durable)
        self.budget.acquire(len(data))
        try:
            self._call("put_object", f"uploading {self.child(key)}", Key=self._key(key), Body=data,
                       **self._write_args())
        finally:
            self.budget.release(len(data))
        return len(data), hashlib.sha256(data).hexdigest() if digest else ""

    def check(self, *, create: bool = False) -> None:
        what = f"S3 target {self.url}" + (f" at {self.endpoint_url}" if self.endpoint_url else "")
        self._call("list_objects_v2", what, Prefix=self.prefix, MaxKeys=1)

    def put_stream(
        self,
        key: str,
        reader: Reader,
        *,
        before_commit: Callable[[], None] | None = None,
        on_bytes: Callable[[int], None] | None = None,
        digest: bool = True,
        durable: bool = True,
    ) -> tuple[int, str]:
        full = self._key(key)
        what = f"uploading {self.child(key)}"
        sha = hashlib.sha256() if digest else None
        size = 0
        budget = self.budget

        def take(n: int) -> bytes:
            """Up to n bytes, with n bytes of the budget held (the caller releases them)."""
            nonlocal size
            budget.acquire(n)
            try:
                data = read_full(reader, n)
            except BaseException:
                budget.release(n)
                raise
            if sha is not None:
                sha.update(data)
            size += len(data)
            if on_bytes and data:
                on_bytes(len(data))
            return data

        first = take(self.part_size)
        if len(first) < self.part_size:
            try:
                if before_commit:
                    before_commit()
                self._call("put_object", what, Key=full, Body=first, **self._write_args())
            finally:
                budget.release(self.part_size)
            return size, sha.hexdigest() if sha is not None else ""

        try:
            upload_id = self._call("create_multipart_upload", what, Key=full, **self._write_args())["UploadId"]
        except BaseException:
            budget.release(self.part_size)
            raise
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="erpops-s3-part")
        slots = threading.BoundedSemaphore(self.concurrency)
        futures: list[tuple[Future[dict[str, Any]], int]] = []
        held = self.part_size  # budget bytes taken for `data` and not yet handed to a part upload
        try:
            data, number = first, 1
            del first  # one reference per part: `data`, then the box
            while data:
                for fut, _ in futures:
                    if fut.done() and fut.exception() is not None:
                        raise fut.exception()  # type: ignore[misc]
                if number > S3_MAX_PARTS:
                    raise BackupError(f"{what}: more than {S3_MAX_PARTS} parts; the object is too large for S3")
                slots.acquire()
                # handed over in a box the upload empties: its bytes are freed before their budget is released
                futures.append((pool.submit(self._upload_part, full, upload_id, number, [data], slots, held, what),
                                held))
                data, held = b"", 0  # the part belongs to its upload now (which releases its bytes)
                number += 1
                data = take(self._part_size_for(number))
                held = self._part_size_for(number)
            budget.release(held)  # the empty read at the end
            held = 0
            parts = [fut.result() for fut, _ in futures]
            if before_commit:
                before_commit()
            self._call("complete_multipart_upload", what, Key=full, UploadId=upload_id,
                       MultipartUpload={"Parts": parts})
        except BaseException as exc:
            pool.shutdown(wait=True, cancel_futures=True)
            # parts that never started give their bytes back, as does the part being read
            budget.release(held + sum(n for fut, n in futures if fut.cancelled()))
            self._abort_after_failure(full, upload_id, what, exc)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return size, sha.hexdigest() if sha is not None else ""

    def _part_size_for(self, number: int) -> int:
        step = (number - 1) // _PARTS_PER_SIZE_STEP
        return min(self.part_size << step, MAX_PART_SIZE) if step else self.part_size

    def _upload_part(
        self, full: str, upload_id: str, number: int, box: list[bytes], slots: threading.BoundedSemaphore, held: int,
        what: str,
    ) -> dict[str, Any]:
        try:
            resp = self._call("upload_part", f"{what} (part {number})", Key=full, UploadId=upload_id,
                              PartNumber=number, Body=box.pop())
            return {"PartNumber": number, "ETag": resp["ETag"]}
        finally:
            box.clear()
            self.budget.release(held)
            slots.release()

    def _abort_after_failure(self, full: str, upload_id: str, what: str, cause: BaseException) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
        except Exception as exc:
            # The endpoint is what failed, most often: say how to clean up later, and keep the
            # original cause as the error.
            note = (f"the multipart upload {upload_id} of s3://{self.bucket}/{full} could not be aborted "
                    f"({type(exc).__name__}); `erpops prune --apply` aborts stale uploads, or run "
                    f"`aws s3api abort-multipart-upload --bucket {self.bucket} --key {full} --upload-id {upload_id}`")
            log.error("%s", note)
            if isinstance(cause, ErpopsError) and cause.args:
                cause.args = (f"{cause.args[0]}; {note}", *cause.args[1:])
            else:
                cause.add_note(note)

    @contextlib.contextmanager
    def get_stream(self, key: str) -> Iterator[Reader]:
        resp = self._call("get_object", f"reading {self.child(key)}", Key=self._key(key))
        body = resp["Body"]
        try:
            yield _S3Body(body, self.child(key))
        finally:
            body.close()

    @contextlib.contextmanager
    def get_range(self, key: str, offset: int, length: int) -> Iterator[Reader]:
        if length <= 0:  # an empty range is not a valid Range header; the object must still be there
            if self.head(key) is None:
                raise UsageError(f"{self.child(key)} does not exist")
            yield _BytesReader(b"")
            return
        resp = self._call("get_object", f"reading {self.child(key)}", Key=self._key(key),
                          Range=f"bytes={offset}-{offset + length - 1}")
        body = resp["Body"]
        try:
            yield Window(_S3Body(body, self.child(key)), length)
        finally:
            body.close()

    def head(self, key: str) -> int | None:
        try:
            resp = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            if not _is_boto_error(exc):
                raise
            err = translate_s3_error(exc, f"checking {self.child(key)}")
            if isinstance(err, UsageError) and "not found" in str(err):
                return None
            raise err from exc
        return int(resp["ContentLength"])

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        full_prefix = f"{self.prefix}/{prefix}" if self.prefix else prefix
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
                for obj in page.get("Contents", []):
                    yield ObjectInfo(self._rel(obj["Key"]), int(obj["Size"]), obj["LastModified"])
        except Exception as exc:
            if _is_boto_error(exc):
                raise translate_s3_error(exc, f"listing {self.child(prefix)}") from exc
            raise

    def delete_many(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = [{"Key": self._key(k)} for k in keys[start:start + 1000]]
            resp = self._call("delete_objects", f"deleting from {self.url}", Delete={"Objects": batch, "Quiet": True})
            errors = resp.get("Errors") or []
            if errors:
                first = errors[0]
                raise ServiceError(f"deleting {len(errors)} object(s) from {self.url} failed, e.g. "
                                   f"{first.get('Key')}: {first.get('Code')} {first.get('Message', '')}")

    def list_incomplete_uploads(self, prefix: str = "") -> list[IncompleteUpload]:
        full_prefix = f"{self.prefix}/{prefix}" if self.prefix else prefix
        found = []
        paginator = self.client.get_paginator("list_multipart_uploads")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
                for up in page.get("Uploads", []):
                    found.append(IncompleteUpload(self._rel(up["Key"]), up["UploadId"], up["Initiated"]))
        except Exception as exc:
            if _is_boto_error(exc):
                raise translate_s3_error(exc, f"listing unfinished uploads under {self.child(prefix)}") from exc
            raise
        return found

    def abort_upload(self, upload: IncompleteUpload) -> None:
        self._call("abort_multipart_upload", f"aborting the upload of {self.child(upload.key)}",
                   Key=self._key(upload.key), UploadId=upload.upload_id)


def parse_url(url: str) -> tuple[str, str, str]:
    """(scheme, bucket or '', path or prefix) of an s3:// or file:// URL, or a plain local path."""
    parts = urlsplit(url)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise UsageError(f"{url!r} names no bucket: write s3://bucket/prefix")
        return "s3", parts.netloc, unquote(parts.path).strip("/")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise UsageError(f"{url!r}: file URLs name a local path: file:///path (three slashes)")
        return "file", "", unquote(parts.path)
    if parts.scheme == "" and url.startswith("/"):
        return "file", "", url
    raise UsageError(f"{url!r} is not a backup target: use s3://bucket/prefix or file:///absolute/path")


def open_target(
    url: str,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    sse: str | None = None,
    kms_key_id: str | None = None,
    storage_class: str | None = None,
    part_size: int = DEFAULT_PART_SIZE,
    concurrency: int = 4,
) -> Target:
    """A Target for `s3://bucket/prefix` or `file:///path` (a bare absolute path works too)."""
    scheme, bucket, path = parse_url(url)
    if scheme == "s3":
        return S3Target(bucket, path, endpoint_url=endpoint_url, region=region, sse=sse, kms_key_id=kms_key_id,
                        storage_class=storage_class, part_size=part_size, concurrency=concurrency)
    if sse or storage_class:
        raise UsageError("--sse and --storage-class apply to s3:// targets only")
    return FileTarget(Path(path))



class HashingReader:
    """Passes bytes through while counting them and hashing them (sha256, and sha1 if asked)."""

    def __init__(self, reader: Reader, *, sha1: bool = False, on_bytes: Callable[[int], None] | None = None,
                 sha256: bool = True) -> None:
        self._reader = reader
        self._sha256 = hashlib.sha256() if sha256 else None
        self._sha1 = hashlib.sha1(usedforsecurity=False) if sha1 else None
        self._on_bytes = on_bytes
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._reader.read(size)
        if data:
            if self._sha256 is not None:
                self._sha256.update(data)
            if self._sha1 is not None:
                self._sha1.update(data)
            self.size += len(data)
            if self._on_bytes:
                self._on_bytes(len(data))
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    @property
    def sha256(self) -> str | None:
        """None when the reader only counts (sha256=False)."""
        return self._sha256.hexdigest() if self._sha256 is not None else None

    @property
    def sha1(self) -> str:
        assert self._sha1 is not None
        return self._sha1.hexdigest()
