"""A throwaway PostgreSQL 15 server on loopback, for tests and local rehearsals.

initdb into a fresh temp dir, start ``postgres`` on 127.0.0.1 and a random free port, hand out
connection details, and on stop() shut it down (pg_ctl fast, then by PID) and delete the dir.
PostgreSQL refuses to run as root, so under root every server-side binary runs through
``runuser -u postgres --`` (or the user named by ERPOPS_PG_USER).
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import quote

from erpops.errors import ServiceError
from erpops.local._proc import (
    LOOPBACK,
    LocalService,
    alive,
    kill_pid,
    log_tail,
    register_cleanup,
    spawn,
    stop_group,
    unregister_cleanup,
    watch,
)

log = logging.getLogger(__name__)

PG_MAJOR = 15
DEFAULT_BINDIR = Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin")
INSTALL_HINT = f"apt-get install postgresql-{PG_MAJOR}"
REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres", "pg_isready", "psql")
# Server messages are parsed (port clash detection): keep them untranslated.
_SERVER_ENV = {"LC_ALL": "C", "LANG": "C"}


def _bindir_fix() -> str:
    return f"fix: {INSTALL_HINT}, or set ERPOPS_PG_BINDIR to the bin directory of PostgreSQL {PG_MAJOR}"


def find_pg_bindir(environ: Mapping[str, str] | None = None) -> Path:
    """The bin directory of PostgreSQL 15.

    Looked up in order: ERPOPS_PG_BINDIR (an explicit setting is never second-guessed),
    /usr/lib/postgresql/15/bin, then ``pg_config --bindir``. Raises ServiceError naming what is
    missing and how to install it, or when the binaries found are not major version 15.
    """
    environ = os.environ if environ is None else environ
    explicit = environ.get("ERPOPS_PG_BINDIR")
    if explicit:
        bindir, source = Path(explicit), f"ERPOPS_PG_BINDIR={explicit}"
    elif DEFAULT_BINDIR.is_dir():
        bindir, source = DEFAULT_BINDIR, str(DEFAULT_BINDIR)
    else:
        pg_config = shutil.which("pg_config")
        if pg_config is None:
            raise ServiceError(
                f"PostgreSQL {PG_MAJOR} not found: no {DEFAULT_BINDIR} and no pg_config on PATH; " + _bindir_fix()
            )
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            raise ServiceError(f"`{pg_config} --bindir` failed: {exc}; " + _bindir_fix()) from exc
        bindir, source = Path(out.strip()), f"{pg_config} --bindir ({out.strip()})"
    return check_pg_bindir(bindir, source)


def check_pg_bindir(bindir: Path, source: str | None = None) -> Path:
    """bindir itself, once it holds every binary erpops runs and they are major version 15.

    source says where bindir came from, for the error message.
    """
    source = source or str(bindir)
    missing = [name for name in REQUIRED_BINARIES if not os.access(bindir / name, os.X_OK)]
    if missing:
        raise ServiceError(
            f"PostgreSQL {PG_MAJOR} binaries not found: {source} has no {', '.join(missing)}; " + _bindir_fix()
        )
    version = server_version(bindir)
    match = re.match(r"(\d+)", version)
    if match is None or int(match.group(1)) != PG_MAJOR:
        raise ServiceError(
            f"{bindir / 'postgres'} is PostgreSQL {version}, erpops needs major version {PG_MAJOR} "
            f"(found via {source}); " + _bindir_fix()
        )
    return bindir


def server_version(bindir: Path) -> str:
    """The version string of ``bindir/postgres``, e.g. '15.18'."""
    try:
        out = subprocess.run(
            [str(bindir / "postgres"), "--version"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ServiceError(f"`{bindir / 'postgres'} --version` failed: {exc}; " + _bindir_fix()) from exc
    # "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
    match = re.search(r"\(PostgreSQL\)\s+(\S+)", out)
    if match is None:
        raise ServiceError(f"cannot read a version from `{bindir / 'postgres'} --version`: {out.strip()!r}")
    return match.group(1)


def _server_account(environ: Mapping[str, str]) -> pwd.struct_passwd | None:
    """The unprivileged account to run the server as, or None when we already are one."""
    if os.geteuid() != 0:
        return None
    name = environ.get("ERPOPS_PG_USER") or "postgres"
    try:
        account = pwd.getpwnam(name)
    except KeyError:
        raise ServiceError(
            f"PostgreSQL cannot run as root and the OS user {name!r} does not exist; "
            f"fix: {INSTALL_HINT} (it creates the 'postgres' user), "
            "or set ERPOPS_PG_USER to an existing unprivileged user"
        ) from None
    if account.pw_uid == 0:
        raise ServiceError(f"ERPOPS_PG_USER={name} is a root account; PostgreSQL needs an unprivileged user")
    if shutil.which("runuser") is None:
        raise ServiceError("runuser not found (needed to run PostgreSQL as non-root); fix: apt-get install util-linux")
    return account


class LocalPostgres(LocalService):
    """A PostgreSQL 15 server in a temp dir on 127.0.0.1, trust auth, stopped and deleted by stop().

    ``fsync=False`` (the default) also turns off synchronous_commit and full_page_writes: the
    data dir is deleted at stop(), so durability buys nothing and costs test time.
    ``settings`` adds ``-c name=value`` server options.
    """

    log_name = "postgres.log"

    def __init__(
        self,
        *,
        port: int | None = None,
        superuser: str = "postgres",
        fsync: bool = False,
        settings: Mapping[str, str] | None = None,
        bindir: str | Path | None = None,
        base_dir: str | Path | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.user = superuser
        self.fsync = fsync
        self.settings = dict(settings or {})
        super().__init__(port=port, base_dir=base_dir, start_timeout=start_timeout, stop_timeout=stop_timeout)
        self._bindir = Path(bindir) if bindir is not None else None
        self._account: pwd.struct_passwd | None = None

    # -- connection details -------------------------------------------------------------

    @property
    def os_user(self) -> str:
        """The OS account the server processes run as."""
        return self._account.pw_name if self._account else pwd.getpwuid(os.geteuid()).pw_name

    @property
    def data_dir(self) -> Path:
        return self._workdir() / "data"

    @property
    def socket_dir(self) -> Path:
        return self._workdir()

    def dsn(self, dbname: str = "postgres") -> str:
        """libpq URI, e.g. postgresql://postgres@127.0.0.1:54321/postgres."""
        return f"postgresql://{quote(self.user, safe='')}@{self.host}:{self.port}/{quote(dbname, safe='')}"

    def env(self) -> dict[str, str]:
        """PGHOST/PGPORT/PGUSER for psql, pg_dump, pg_restore run as subprocesses."""
        return {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user}

    def bin(self, name: str) -> Path:
        """Path of a PostgreSQL 15 binary (psql, pg_dump, pg_restore, ...)."""
        if self._bindir is None:
            self._bindir = find_pg_bindir()
        path = self._bindir / name
        if not os.access(path, os.X_OK):
            raise ServiceError(f"{name} not found in {self._bindir}; " + _bindir_fix())
        return path

    def psql(self, sql: str, db: str = "postgres", *, timeout: float = 60.0) -> str:
        """Run SQL through psql with ON_ERROR_STOP=1; return stdout (unaligned, tuples only)."""
        argv = [
            str(self.bin("psql")),
            "--no-psqlrc",
            "--quiet",
            "--no-align",
            "--tuples-only",
            "--set=ON_ERROR_STOP=1",
            "--dbname",
            self.dsn(db),
            "--file=-",
        ]
        env = {**os.environ, **self.env(), "PGCONNECT_TIMEOUT": "5"}
        try:
            done = subprocess.run(
                argv, input=sql, capture_output=True, text=True, env=env, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise ServiceError(f"psql on {self.dsn(db)} did not finish within {timeout:g}s") from exc
        if done.returncode != 0:
            raise ServiceError(f"psql on {self.dsn(db)} failed (exit {done.returncode}): {done.stderr.strip()}")
        return done.stdout

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> LocalPostgres:
        """initdb a temp dir and start the server; returns self once it accepts connections."""
        if self._proc is not None:
            return self
        self._bindir = check_pg_bindir(self._bindir, f"bindir={self._bindir}") if self._bindir else find_pg_bindir()
        self._account = _server_account(os.environ)
        self._tmp = Path(tempfile.mkdtemp(prefix="erpops-pg-", dir=self._base_dir))
        register_cleanup(self, self.stop)
        try:
            if self._account is not None:
                os.chown(self._tmp, self._account.pw_uid, self._account.pw_gid)
            self._initdb()
            self._start_server()
        except BaseException:
            self.stop()
            raise
        log.info("PostgreSQL %s up on %s:%s (pid %s)", PG_MAJOR, self.host, self._port, self.pid)
        return self

    def stop(self) -> None:
        """pg_ctl stop -m fast; then SIGQUIT/SIGKILL the postmaster by PID; then delete the dir."""
        unregister_cleanup(self)
        try:
            if alive(self._server):
                self._pg_ctl_stop()
            kill_pid(self._server, signal.SIGQUIT, timeout=self.stop_timeout)
            stop_group(self._proc, timeout=self.stop_timeout)
        finally:
            self._release()

    # -- internals ------------------------------------------------------------------------

    def _as_server_user(self, argv: Sequence[str]) -> list[str]:
        if self._account is None:
            return list(argv)
        return ["runuser", "-u", self._account.pw_name, "--", *argv]

    def _server_env(self) -> dict[str, str]:
        # PG* variables from the caller's shell must not redirect the server or pg_ctl.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        return {**env, **_SERVER_ENV}

    def _initdb(self) -> None:
        argv = [
            str(self.bin("initdb")),
            "--pgdata",
            str(self.data_dir),
            "--username",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        ]
        if not self.fsync:
            argv.append("--no-sync")
        done = subprocess.run(
            self._as_server_user(argv),
            capture_output=True,
            text=True,
            cwd=self._workdir(),
            env=self._server_env(),
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            hint = ""
            if self._account is not None:
                hint = (
                    f"\n(is {self._workdir()} reachable by OS user {self._account.pw_name}? "
                    "pass base_dir= or set TMPDIR to a world-traversable directory such as /tmp)"
                )
            raise ServiceError(f"initdb failed (exit {done.returncode}):\n{(done.stderr or done.stdout).strip()}{hint}")

    def _server_argv(self, port: int) -> list[str]:
        options = {"listen_addresses": LOOPBACK}
        if not self.fsync:
            options.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        options.update(self.settings)
        argv = [str(self.bin("postgres")), "-D", str(self.data_dir), "-p", str(port), "-k", str(self._workdir())]
        for name, value in options.items():
            argv += ["-c", f"{name}={value}"]
        return self._as_server_user(argv)

    def _start_server(self) -> None:
        self._start_on_free_port("PostgreSQL", lambda port: spawn(
            self._server_argv(port), log_path=self.log_path, cwd=self._workdir(), env=self._server_env()),
            self._wait_ready)

    def _wait_ready(self) -> bool:
        """Wait until our postmaster is ready and answers a query; False if it exited.

        The port is probed only once postmaster.pid in *our* data dir says "ready": a program
        that took the port first would accept a probe too, and might never answer it. Then
        pg_isready, then a real query naming our data dir.
        """
        assert self._proc is not None
        isready = [
            str(self.bin("pg_isready")),
            "--host", self.host, "--port", str(self.port),
            "--username", self.user, "--dbname", "postgres",
            "--timeout", "2", "--quiet",
        ]  # fmt: skip
        deadline = time.monotonic() + self.start_timeout
        last_error = "postmaster.pid never said ready"
        while self._proc.poll() is None:
            pid = self._postmaster_pid_if_ready()
            if pid is not None:
                if subprocess.run(isready, check=False, env=self._server_env()).returncode != 0:
                    last_error = "postmaster.pid says ready but pg_isready gets no answer"
                else:
                    try:
                        data_directory = self.psql("SHOW data_directory", timeout=10).strip()
                    except ServiceError as exc:
                        last_error = str(exc)
                    else:
                        if Path(data_directory) == self.data_dir:
                            self._server = watch(pid)
                            return True
                        last_error = f"another PostgreSQL (data dir {data_directory}) answers on this port"
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"PostgreSQL did not accept connections on {self.host}:{self.port} within "
                    f"{self.start_timeout:g}s ({last_error}); server log tail:\n" + log_tail(self.log_path)
                )
            time.sleep(0.03)
        return False

    def _postmaster_pid_if_ready(self) -> int | None:
        """The postmaster PID once postmaster.pid reports status "ready" on our port, else None.

        Lines of postmaster.pid: PID, data dir, start time, port, socket dir, listen address,
        shared memory key, status (starting / ready / stopping).
        """
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            if len(lines) >= 8 and lines[3].strip() == str(self.port) and lines[7].strip() == "ready":
                return int(lines[0])
        except (OSError, ValueError):
            pass  # not written yet, or caught half-written
        return None

    def _pg_ctl_stop(self) -> None:
        argv = [
            str(self.bin("pg_ctl")), "stop", "--pgdata", str(self.data_dir),
            "--mode", "fast", "--wait", "--timeout", str(int(self.stop_timeout)),
        ]  # fmt: skip
        try:
            done = subprocess.run(
                self._as_server_user(argv),
                capture_output=True,
                text=True,
                cwd=self._workdir(),
                env=self._server_env(),
                timeout=self.stop_timeout + 5,
                check=False,
            )
        except subprocess.TimeoutExpired:
            log.warning("pg_ctl stop timed out; killing the postmaster by PID")
            return
        if done.returncode != 0:
            log.warning("pg_ctl stop failed (exit %s): %s", done.returncode, done.stderr.strip())
