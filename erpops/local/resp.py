"""A tiny Redis client speaking RESP2 over a raw socket: enough for health checks and tests.

erpops deliberately has no redis-py dependency; this covers PING, AUTH, SET, GET, INFO and
SHUTDOWN, plus ``command()`` for anything else.
"""

from __future__ import annotations

import socket
from types import TracebackType
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from erpops.errors import ServiceError

Reply = str | bytes | int | None | list["Reply"]


class RespError(ServiceError):
    """Redis answered a command with an error reply (``-ERR ...``, ``-NOAUTH ...``)."""


def encode_command(*args: str | bytes | int | float) -> bytes:
    """A command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def read_reply(stream: BinaryIO) -> Reply:
    """One RESP2 reply; raises RespError for an error reply, ConnectionError on EOF."""
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed by the server")
    kind, body = line[:1], line[1:-2]
    if kind == b"+":
        return body.decode()
    if kind == b"-":
        raise RespError(f"redis error: {body.decode(errors='replace')}")
    if kind == b":":
        return int(body)
    if kind == b"$":
        size = int(body)
        if size < 0:
            return None
        data = stream.read(size + 2)
        if len(data) != size + 2:
            raise ConnectionError("connection closed in the middle of a reply")
        return data[:-2]
    if kind == b"*":
        count = int(body)
        return None if count < 0 else [read_reply(stream) for _ in range(count)]
    raise ServiceError(f"not a RESP reply: {line[:80]!r}")


def parse_info(text: str) -> dict[str, str]:
    """INFO output as {field: value}; section headers and blank lines are dropped."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and ":" in line:
            key, _, value = line.partition(":")
            fields[key] = value
    return fields


class RespClient:
    """One connection to a Redis server, opened on first use; usable as a context manager."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6379,
        *,
        password: str | None = None,
        username: str | None = None,
        db: int = 0,
        timeout: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        self.password = password
        self.username = username
        self.db = db
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._stream: BinaryIO | None = None

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 5.0) -> RespClient:
        """From redis://[[user]:password@]host[:port][/db]."""
        parts = urlsplit(url)
        if parts.scheme != "redis":
            raise ServiceError(f"unsupported Redis URL scheme in {parts.scheme}://...: only redis:// is supported")
        db = int(parts.path.lstrip("/") or 0)
        return cls(
            parts.hostname or "127.0.0.1",
            parts.port or 6379,
            password=unquote(parts.password) if parts.password else None,
            username=unquote(parts.username) if parts.username else None,
            db=db,
            timeout=timeout,
        )

    # -- connection ---------------------------------------------------------------------

    def connect(self) -> None:
        if self._sock is not None:
            return
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise ServiceError(f"cannot reach Redis at {self.host}:{self.port}: {exc}") from exc
        self._sock = sock
        self._stream = sock.makefile("rb")
        try:
            if self.password is not None:
                auth = (self.username, self.password) if self.username else (self.password,)
                self.command("AUTH", *auth)
            if self.db:
                self.command("SELECT", self.db)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
        if self._sock is not None:
            self._sock.close()
        self._sock = self._stream = None

    def __enter__(self) -> RespClient:
        self.connect()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def command(self, *args: str | bytes | int | float) -> Reply:
        """Send one command and return its reply (bulk strings as bytes, status as str)."""
        self.connect()
        assert self._sock is not None and self._stream is not None
        try:
            self._sock.sendall(encode_command(*args))
            return read_reply(self._stream)
        except RespError:
            raise
        except OSError as exc:  # ConnectionError and socket.timeout are OSErrors
            self.close()
            raise ServiceError(f"Redis at {self.host}:{self.port} failed during {args[0]!r}: {exc}") from exc

    # -- commands -----------------------------------------------------------------------

    def ping(self) -> bool:
        return self.command("PING") == "PONG"

    def set(self, key: str | bytes, value: str | bytes | int | float, *, ex: int | None = None) -> bool:
        args: list[str | bytes | int | float] = ["SET", key, value]
        if ex is not None:
            args += ["EX", ex]
        return self.command(*args) == "OK"

    def get(self, key: str | bytes) -> bytes | None:
        reply = self.command("GET", key)
        assert reply is None or isinstance(reply, bytes)
        return reply

    def info(self, section: str | None = None) -> dict[str, str]:
        reply = self.command("INFO", *([section] if section else []))
        assert isinstance(reply, bytes)
        return parse_info(reply.decode())

    def shutdown(self, *, nosave: bool = True) -> None:
        """SHUTDOWN [NOSAVE]: the server closes the connection instead of replying on success."""
        self.connect()
        assert self._sock is not None and self._stream is not None
        try:
            self._sock.sendall(encode_command("SHUTDOWN", "NOSAVE" if nosave else "SAVE"))
            read_reply(self._stream)
        except (ConnectionError, OSError):
            pass  # expected: the server went away
        finally:
            self.close()
