"""Where attachment bytes live: a directory (Odoo's filestore/<db>) or an S3 bucket/prefix.

Both expose the same five operations, streamed in chunks so memory stays bounded whatever the
file size: `size` (None when absent), `read` (an iterator of chunks), `write` (from a reader,
returning the sha1 of what was sent), `delete`, and `url`. Verification is done by the caller,
by reading back what `write` stored: S3-compatible servers do not all check client checksums.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

from erpops.errors import UsageError

CHUNK = 1024 * 1024
# below this a file travels in one PUT (held in memory: at most jobs x this); above it, multipart
SINGLE_PUT_MAX = 8 * 1024 * 1024


class Reader(Protocol):
    def read(self, n: int = -1) -> bytes: ...


class HashingReader:
    """Passes bytes through, hashing them with sha1 (Odoo's attachment checksum) and counting them."""

    def __init__(self, raw: Reader) -> None:
        self.raw = raw
        self.sha1 = hashlib.sha1()  # noqa: S324 (Odoo's content address, not a security use)
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha1.update(data)
        self.size += len(data)
        return data


class Store(Protocol):
    url: str

    def size(self, key: str) -> int | None: ...
    def read(self, key: str) -> Iterator[bytes]: ...
    def open(self, key: str) -> BinaryIO: ...
    def write(self, key: str, reader: Reader, size: int) -> None: ...
    def delete(self, key: str) -> None: ...


def sha1_of(store: Store, key: str) -> tuple[str, int]:
    """(sha1, size) of an object as the store returns it now: the verification after a write."""
    h = hashlib.sha1()  # noqa: S324 (content address)
    size = 0
    for chunk in store.read(key):
        h.update(chunk)
        size += len(chunk)
    return h.hexdigest(), size


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise UsageError(f"attachment path {key!r} is not a relative path inside the store: refusing to use it")
    return key


class DirStore:
    """A directory holding Odoo's layout: <dir>/<store_fname> (ab/abcdef...)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def open(self, key: str) -> BinaryIO:
        return self._path(key).open("rb")

    def read(self, key: str) -> Iterator[bytes]:
        with self.open(key) as f:
            while chunk := f.read(CHUNK):
                yield chunk

    def write(self, key: str, reader: Reader, size: int) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
        try:
            with tmp.open("wb") as f:
                while chunk := reader.read(CHUNK):
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)  # a reader never sees half a file
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()


class S3Store:
    """s3://bucket/prefix: object <prefix>/<path>, as fs_storage's rooted_dir over s3fs maps them."""

    def __init__(self, bucket: str, prefix: str, *, endpoint_url: str | None = None, region: str | None = None,
                 jobs: int = 8, client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        self.region = region
        self.jobs = jobs
        self._client = client
        self._lock = threading.Lock()

    @property
    def directory_path(self) -> str:
        """fs.storage's directory_path that reads this location: bucket[/prefix]."""
        return f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                from erpops.backup.storage import s3_client

                self._client = s3_client(self.endpoint_url, self.region, max_attempts=5, pool=self.jobs * 2 + 4)
            return self._client

    def key(self, path: str) -> str:
        _check_key(path)
        return f"{self.prefix}/{path}" if self.prefix else path

    def _call(self, op: str, what: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        from erpops.backup.storage import translate_s3_error

        try:
            return getattr(self.client, op)(Bucket=self.bucket, **kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise translate_s3_error(exc, what) from exc

    def check(self) -> None:
        """The bucket exists and our credentials may list it (exit 2/3 before any work)."""
        self._call("list_objects_v2", f"listing {self.url}", Prefix=self.key("x")[:-1], MaxKeys=1)

    def size(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=self.key(key))["ContentLength"])
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404 or exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            from erpops.backup.storage import translate_s3_error

            raise translate_s3_error(exc, f"reading {self.url}/{key}") from exc

    def open(self, key: str) -> BinaryIO:
        body = self._call("get_object", f"reading {self.url}/{key}", Key=self.key(key))["Body"]
        return body  # type: ignore[no-any-return]

    def read(self, key: str) -> Iterator[bytes]:
        body = self.open(key)
        try:
            while chunk := body.read(CHUNK):
                yield chunk
        finally:
            body.close()

    def write(self, key: str, reader: Reader, size: int) -> None:
        what = f"writing {self.url}/{key}"
        if size <= SINGLE_PUT_MAX:
            data = reader.read()
            self._call("put_object", what, Key=self.key(key), Body=data, ContentLength=len(data))
            return
        # multipart, one part in flight per file: memory stays at jobs x part size
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import BotoCoreError, ClientError

        from erpops.backup.storage import translate_s3_error

        config = TransferConfig(multipart_threshold=SINGLE_PUT_MAX, multipart_chunksize=SINGLE_PUT_MAX,
                                max_concurrency=1, use_threads=False)
        try:
            self.client.upload_fileobj(reader, self.bucket, self.key(key), Config=config)
        except (BotoCoreError, ClientError) as exc:
            raise translate_s3_error(exc, what) from exc

    def delete(self, key: str) -> None:
        self._call("delete_object", f"deleting {self.url}/{key}", Key=self.key(key))


def parse_location(text: str, *, endpoint_url: str | None = None, region: str | None = None,
                   jobs: int = 8) -> DirStore | S3Store:
    """`s3://bucket[/prefix]` or a directory path (Odoo's <data_dir>/filestore/<db>)."""
    parts = urlsplit(text)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise UsageError(f"{text!r} names no bucket: write s3://bucket or s3://bucket/prefix")
        return S3Store(parts.netloc, unquote(parts.path), endpoint_url=endpoint_url, region=region, jobs=jobs)
    if parts.scheme not in ("", "file"):
        raise UsageError(f"{text!r}: use s3://bucket[/prefix] or the path of Odoo's filestore/<db> directory")
    return DirStore(Path(unquote(parts.path) if parts.scheme == "file" else text).expanduser())
