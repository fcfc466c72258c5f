"""Private PostgreSQL and MariaDB servers that a test may start, freeze, thaw, stop, crash and start again.

The shared services on 5432 and 3306 are never touched: each :class:`PrivatePostgres` or :class:`PrivateMariaDB`
has its own data directory (a copy of a template made once per test process; in /dev/shm when it has room, else
the temporary directory), its own port in 20000-32000 (free when picked), its own unix socket directory, and
listens on 127.0.0.1 only. As root, PostgreSQL runs as the ``postgres`` OS user and MariaDB as ``mysql``
(everything they need is chowned from here, nothing by hand).

A server's processes are the ones running in its directory (PostgreSQL's children each start a session of their
own, so a process group would miss them). :meth:`freeze` SIGSTOPs the main process first, so that it forks no more,
then every other one: the postmaster with all its backends and auxiliary processes, or mysqld. Settings favour
speed over durability against an OS crash (no fsync, small buffers) but keep a committed transaction across a
crash of the server itself (:meth:`kill`), which is what fault tests need.

Use::

    with PrivatePostgres() as pg:                 # started; stopped and removed on exit
        pg.freeze(); ...; pg.thaw()

    private_pg = private_postgres("private_pg")   # in a test module or conftest: a module-scoped fixture

Something missing (a binary, an OS user) raises :class:`PrivateUnavailable`; the fixtures turn it into a skip on a
developer's machine and a failure under ``CI=true``. Every server is stopped at interpreter exit at the latest, and
servers left behind by a test process that was killed are swept when the next one starts.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import pytest

from .databases import IN_CI, MYSQL_USER, PASSWORD, PG_USER, Database

PORT_RANGE = (20000, 32000)  # below the ephemeral range (32768-60999), away from 5432/3306
HOST = "127.0.0.1"
_PREFIX = "sqlhttp-private-"
_lock = threading.RLock()
_claimed_ports: set[int] = set()
_servers: set[_PrivateServer] = set()
_templates: dict[str, Path] = {}
_base: Path | None = None


class PrivateUnavailable(RuntimeError):
    """What a private server needs is missing on this machine (a binary, an OS user)."""


# --- ports, processes, users ------------------------------------------------------------------------------------------


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers do: a port that only has connections in TIME_WAIT (closed by a server) is free for them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_private_port() -> int:
    """A port in :data:`PORT_RANGE` that nothing listens on now and that no other private server of ours holds."""
    with _lock:
        for _ in range(500):
            port = random.randint(*PORT_RANGE)  # random, so that test processes running side by side rarely collide
            if port not in _claimed_ports and _bindable(port):
                _claimed_ports.add(port)
                return port
    raise PrivateUnavailable(f"no free port in {PORT_RANGE}")


def _state(pid: int) -> str | None:
    """The state letter of process (or thread) ``pid`` (R, S, T, Z, ...), or None once it is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return data[data.rindex(")") + 2]


def _processes_in(directory: Path, first: int | None = None) -> list[int]:
    """The live processes whose working directory is ``directory`` or below it (``first`` first, if among them).

    This is how a server's processes are found: PostgreSQL's children each call setsid(), so they share no process
    group with the postmaster, and they outlive it as orphans; but all of them run in the data directory.
    """
    prefix = str(directory)
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                cwd = os.readlink(f"/proc/{name}/cwd")  # fails for a zombie
            except OSError:
                continue
            if cwd == prefix or cwd.startswith(prefix + "/"):
                found.append(int(name))
    return sorted(found, key=lambda pid: pid != first)


def _stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is stopped (or gone)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True
    return all(_state(int(task)) in (None, "T", "t", "Z", "X") for task in tasks if task.isdigit())


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _kill_all_in(directory: Path, timeout: float = 10) -> None:
    """SIGKILL every process running in ``directory`` (thawed too, so that nothing stays stopped) until none is."""
    deadline = time.monotonic() + timeout
    while (pids := _processes_in(directory)) and time.monotonic() < deadline:
        _signal(pids, signal.SIGKILL)
        _signal(pids, signal.SIGCONT)
        time.sleep(0.02)


def _account(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _chown_tree(path: Path, account: pwd.struct_passwd | None) -> None:
    if account is None:
        return
    os.chown(path, account.pw_uid, account.pw_gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), account.pw_uid, account.pw_gid, follow_symlinks=False)


def _find(names: list[str], dirs: list[str]) -> str | None:
    for name in names:
        for directory in dirs:
            candidate = os.path.join(directory, name)
            if os.access(candidate, os.X_OK):
                return candidate
        found = shutil.which(name)
        if found:
            return found
    return None


def _traversable(path: Path) -> bool:
    """Whether any user may pass through every directory down to ``path`` (the servers run as other users)."""
    return all(parent.stat().st_mode & 0o001 for parent in [path, *path.parents])


# --- the directory everything lives in, and sweeping what a killed test process left -------------------------------


def _sweep_stale(root: Path) -> None:
    """Stop servers that a test process now gone left behind, and remove their directories."""
    for stale in glob.glob(str(root / f"{_PREFIX}*")):
        try:
            owner = int(Path(stale).name[len(_PREFIX) :].split("-")[0])
        except ValueError:
            continue
        if owner == os.getpid() or Path(f"/proc/{owner}").exists():
            continue
        _kill_all_in(Path(stale))
        shutil.rmtree(stale, ignore_errors=True)


def _roots() -> list[Path]:
    """Where private servers may live, the one to use first: ``SQLHTTP_PRIVATE_DIR`` if set, else memory
    (/dev/shm, where copying a template takes a few milliseconds), else the temporary directory."""
    if os.environ.get("SQLHTTP_PRIVATE_DIR"):
        return [Path(os.environ["SQLHTTP_PRIVATE_DIR"]).resolve()]
    roots = []
    for candidate in (Path("/dev/shm"), Path(tempfile.gettempdir()).resolve(), Path("/tmp")):
        try:
            space = os.statvfs(candidate)
        except OSError:
            continue
        roomy = space.f_bavail * space.f_frsize >= 2 << 30
        # The servers run as other OS users (when we are root), who must reach their directories.
        usable = os.access(candidate, os.W_OK | os.X_OK) and (os.geteuid() != 0 or _traversable(candidate))
        if roomy and usable and candidate not in roots:
            roots.append(candidate)
    if not roots:
        raise PrivateUnavailable("no writable directory with 2 GiB free for private servers (set SQLHTTP_PRIVATE_DIR)")
    return roots


def _base_dir() -> Path:
    """This process's directory for templates and servers, made on first use (and removed at exit)."""
    global _base
    with _lock:
        if _base is None:
            roots = _roots()
            for root in roots:
                _sweep_stale(root)
            _base = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=roots[0]))
            _base.chmod(0o711)
            atexit.register(_cleanup_all)
        return _base


def _cleanup_all() -> None:
    global _base
    for server in list(_servers):
        with contextlib.suppress(Exception):
            server.cleanup()
    with _lock:
        if _base is not None:
            shutil.rmtree(_base, ignore_errors=True)
            _base = None
            _templates.clear()


# --- the servers ------------------------------------------------------------------------------------------------------


_S = TypeVar("_S", bound="_PrivateServer")
Scope = Literal["session", "package", "module", "class", "function"]


class _PrivateServer:
    kind: ClassVar[str]
    os_user: ClassVar[str]  # the OS user the server runs as when we are root
    stop_signal: ClassVar[int]
    user: str  # the superuser, with no password
    database = "test"
    login_user: str  # a role/user whose password is checked (PASSWORD), owning/granted ``database``
    login_password = PASSWORD

    def __init__(self, *, port: int | None = None, start_timeout: float = 30.0, stop_timeout: float = 30.0,
                 _template: bool = True) -> None:
        self._binaries = self.find_binaries()
        self._account = self._run_as()
        template = self.template() if _template else None
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._frozen = False
        self.port = port if port is not None else free_private_port()
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.kind}-{self.port}-", dir=_base_dir()))
        self.data_dir = self.dir / "data"
        self.socket_dir = self.dir / "run"
        self.log_path = self.dir / "server.log"
        try:
            self.socket_dir.mkdir()
            (self.dir / "tmp").mkdir()
            self.log_path.touch()
            if template is not None:
                shutil.copytree(template, self.data_dir, symlinks=True)
            _chown_tree(self.dir, self._account)
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        with _lock:
            _servers.add(self)

    # what subclasses provide

    @classmethod
    def find_binaries(cls) -> dict[str, str]:
        raise NotImplementedError

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self, log_offset: int) -> bool:
        raise NotImplementedError

    @classmethod
    def _build_template(cls, target: Path) -> None:
        raise NotImplementedError

    def connect(self, **options: Any) -> Any:
        """A DB-API connection as :attr:`user` to :attr:`database` over TCP; ``options`` go to the driver."""
        raise NotImplementedError

    # the template: one initialized, configured data directory per process, copied for each server

    @classmethod
    def template(cls) -> Path:
        with _lock:
            if cls.kind not in _templates:
                target = _base_dir() / f"template-{cls.kind}"
                cls._build_template(target)
                _templates[cls.kind] = target
            return _templates[cls.kind]

    @classmethod
    def _run_as(cls) -> pwd.struct_passwd | None:
        """The OS account to run the server as: None for ourselves (when we are not root)."""
        if os.geteuid() != 0:
            return None
        account = _account(cls.os_user)
        if account is None:
            raise PrivateUnavailable(f"running as root, and there is no {cls.os_user!r} OS user to run {cls.kind} as")
        return account

    def _spawn(self, command: list[str], output: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        env = {**os.environ, "LC_ALL": "C.UTF-8", "TZ": "UTC"}
        user: dict[str, Any] = {}
        if self._account is not None:
            env["HOME"] = str(self.dir)
            user = {"user": self._account.pw_uid, "group": self._account.pw_gid, "extra_groups": []}
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, env=env,
                                cwd=self.dir, **user, **kwargs)

    # state

    @property
    def pid(self) -> int | None:
        """The server's main process (the postmaster, mysqld), while it runs."""
        return self._process.pid if self.running else None  # type: ignore[union-attr]

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def frozen(self) -> bool:
        return self._frozen

    def pids(self) -> list[int]:
        """Every process of the server (all that run in its directory), the main one first."""
        return _processes_in(self.dir, first=self._process.pid if self._process is not None else None)

    def log(self) -> str:
        """The server's log so far (every start appends to it)."""
        return self.log_path.read_text(errors="replace")

    # life cycle

    def start(self: _S) -> _S:
        """Start the server (if it is not running) and wait until it accepts connections."""
        if self.running:
            return self
        self._reap()  # after a crash of its own: nothing of the old server is left
        self._clear_stale()
        if not _bindable(self.port):
            raise RuntimeError(f"{self.kind}: port {self.port} was taken by another process while the server was down")
        offset = self.log_path.stat().st_size
        with open(self.log_path, "ab") as output:
            self._process = self._spawn(self._command(), output, start_new_session=True)
        self._frozen = False
        deadline = time.monotonic() + self.start_timeout
        while not self._ready(offset):
            if self._process.poll() is not None:
                self._reap()
                raise RuntimeError(f"{self.kind} exited while starting; its log:\n{self.log()[offset:][-3000:]}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"{self.kind} was not ready in {self.start_timeout} s; its log:\n"
                                   f"{self.log()[offset:][-3000:]}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Shut down fast (thawed first if frozen) and wait until every process of the server has exited.

        Past :attr:`stop_timeout`, every process of it is killed (SIGKILL).
        """
        process = self._process
        if process is None:
            return
        if self._frozen:
            self.thaw()
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(self.stop_signal)
            try:
                process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        self._reap()

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> None:
        """Crash the server: SIGKILL every process of it, at once, frozen or not. :meth:`start` recovers."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGSTOP)  # no child forked, none told of the end, until all are killed
            _signal(self.pids(), signal.SIGKILL)
            process.wait()
        self._reap()

    def _reap(self) -> None:
        """Once the main process has exited: make sure nothing of the server is left, and forget it."""
        if self._process is None:
            return
        _kill_all_in(self.dir)
        self._process = None
        self._frozen = False

    def _clear_stale(self) -> None:
        """Before a start, with no process of the server left: remove what a crashed one left behind."""

    def freeze(self) -> None:
        """SIGSTOP the server and every process of it, and wait until all of them are stopped."""
        if not self.running:
            raise RuntimeError(f"{self.kind} is not running")
        self._frozen = True
        deadline = time.monotonic() + 5
        # The main process first: once it is stopped it forks no more children, so the rest are all there to stop.
        while running := [pid for pid in self.pids() if not _stopped(pid)]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind}: processes {running} did not stop")
            _signal(running[:1] if running[0] == self.pid else running, signal.SIGSTOP)
            time.sleep(0.005)

    def thaw(self) -> None:
        """SIGCONT the server and every process of it."""
        if self._process is not None:
            _signal(self.pids(), signal.SIGCONT)
        self._frozen = False

    def ensure_running(self) -> None:
        """Thawed and started, whatever a test left it in (for a fixture shared by several tests)."""
        if self._frozen:
            self.thaw()
        if not self.running:
            self.start()

    def cleanup(self) -> None:
        """Stop the server (killing it if need be), remove its directory and give back its port. Idempotent."""
        try:
            self.stop()
        finally:
            with contextlib.suppress(Exception):
                self.kill()
            shutil.rmtree(self.dir, ignore_errors=True)
            with _lock:
                _servers.discard(self)
                _claimed_ports.discard(self.port)

    close = cleanup

    def __enter__(self) -> Any:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        state = "frozen" if self._frozen else "running" if self.running else "stopped"
        return f"<{type(self).__name__} {HOST}:{self.port} {state} {self.dir}>"

    # how to reach it

    @property
    def host(self) -> str:
        return HOST

    @property
    def url(self) -> str:
        raise NotImplementedError

    def database_for(self, key: str) -> Database:
        """The :class:`Database` of the support package for this server: ``body()`` logs in as :attr:`login_user`
        with its password, ``run()``/``admin()`` go in as the superuser. Serve it with ``{key: server.target}``."""
        raise NotImplementedError


def _tail(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")
    except OSError:
        return ""


class PrivatePostgres(_PrivateServer):
    """A PostgreSQL server of its own: superuser ``postgres`` (trusted, no password) and database ``test``.

    ``login_user`` (``SQLHTTP_TEST_PG_USER``, default ``sqlhttp_test``) has its password checked (scram-sha-256)
    and owns ``test``, as on the shared server.
    """

    kind = "postgres"
    os_user = "postgres"
    stop_signal = signal.SIGINT  # fast shutdown: roll back open transactions, end sessions, checkpoint
    user = "postgres"
    login_user = PG_USER
    SETTINGS: ClassVar[dict[str, str]] = {
        "listen_addresses": "'127.0.0.1'",
        "fsync": "off",  # a crash of the server keeps committed data; only an OS crash would lose it
        "full_page_writes": "off",
        "wal_level": "minimal",
        "max_wal_senders": "0",
        "shared_buffers": "16MB",
        "max_connections": "100",
        "logging_collector": "off",
        "timezone": "'UTC'",
        "log_timezone": "'UTC'",
        "password_encryption": "'scram-sha-256'",
    }

    @classmethod
    def find_binaries(cls) -> dict[str, str]:
        dirs = [os.environ.get("SQLHTTP_TEST_PG_BINDIR", "")]
        dirs += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(Path(d).parent.name), reverse=True)
        dirs += ["/usr/local/pgsql/bin"]
        found = {name: _find([name], [d for d in dirs if d]) for name in ("initdb", "postgres")}
        missing = [name for name, path in found.items() if path is None]
        if missing:
            raise PrivateUnavailable(f"PostgreSQL server binaries not found: {', '.join(missing)} "
                                     "(apt-get install postgresql, or set SQLHTTP_TEST_PG_BINDIR)")
        return found  # type: ignore[return-value]

    @classmethod
    def _build_template(cls, target: Path) -> None:
        server = cls(_template=False)
        try:
            server._initdb()
            server.start()
            import psycopg
            from psycopg import sql

            with psycopg.connect(host=HOST, port=server.port, user="postgres", dbname="postgres",
                                 autocommit=True, connect_timeout=10) as connection:
                role = sql.Identifier(cls.login_user)
                connection.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                    role, sql.Literal(cls.login_password)))
                connection.execute(sql.SQL("CREATE DATABASE test OWNER {}").format(role))
            with psycopg.connect(host=HOST, port=server.port, user="postgres", dbname="test",
                                 autocommit=True, connect_timeout=10) as connection:
                connection.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(role))
            server.stop()
            shutil.move(server.data_dir, target)
        finally:
            server.cleanup()

    def _initdb(self) -> None:
        for locale in ("C.UTF-8", "C"):
            shutil.rmtree(self.data_dir, ignore_errors=True)
            with open(self.log_path, "ab") as output:
                done = self._spawn([self._binaries["initdb"], "-D", str(self.data_dir), "-U", "postgres", "-A", "trust",
                                    "-E", "UTF8", f"--locale={locale}", "--no-sync", "--no-instructions"], output)
                if done.wait(120) == 0:
                    break
        else:
            raise RuntimeError(f"initdb failed; its log:\n{self.log()[-3000:]}")
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\n# sqlhttp-middleware private test server\n")
            conf.writelines(f"{name} = {value}\n" for name, value in self.SETTINGS.items())
        (self.data_dir / "pg_hba.conf").write_text(
            "local all all trust\n"
            f'host all "{self.login_user}" 127.0.0.1/32 scram-sha-256\n'
            "host all all 127.0.0.1/32 trust\n"
        )

    def _command(self) -> list[str]:
        return [self._binaries["postgres"], "-D", str(self.data_dir), "-p", str(self.port),
                "-k", str(self.socket_dir), "-c", f"listen_addresses={HOST}"]

    def _ready(self, log_offset: int) -> bool:
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        # Line 8 is the postmaster's status; it reads "ready" once connections are accepted. The pid guards against
        # the file of an earlier, crashed run.
        return len(lines) >= 8 and lines[0].strip() == str(self._process.pid) and lines[7].strip() == "ready"  # type: ignore[union-attr]

    def _clear_stale(self) -> None:
        # No process of an old server is left: the postmaster need not wonder whether the pid in the file lives on
        # (it refuses to start if that pid was reused by another process of the postgres OS user).
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / "postmaster.pid").unlink()

    @property
    def url(self) -> str:
        """``postgresql://postgres@127.0.0.1:PORT/test`` (SQLAlchemy picks its default driver for it)."""
        return f"postgresql://{self.user}@{HOST}:{self.port}/{self.database}"

    @property
    def sqlalchemy_url(self) -> str:
        """``postgresql+psycopg://postgres@127.0.0.1:PORT/test``, the driver the tests use."""
        return f"postgresql+psycopg://{self.user}@{HOST}:{self.port}/{self.database}"

    @property
    def target(self) -> str:
        """The middleware's ``targets`` entry: ``postgresql://127.0.0.1:PORT``."""
        return f"postgresql://{HOST}:{self.port}"

    def connect(self, **options: Any) -> Any:
        import psycopg

        params: dict[str, Any] = {"host": HOST, "port": self.port, "user": self.user, "dbname": self.database,
                                  "connect_timeout": 5, **options}
        return psycopg.connect(**params)

    def database_for(self, key: str = "pg") -> Database:
        return Database(key, "postgresql", "postgres", self.login_user, self.login_password, self.database,
                        self.sqlalchemy_url)


class PrivateMariaDB(_PrivateServer):
    """A MariaDB server of its own: ``root`` with an empty password, and database ``test``.

    ``login_user`` (``SQLHTTP_TEST_MYSQL_USER``, default ``sqlhttp_test``) logs in with its password and has all
    rights on ``test`` and on ``sqlhttp_test_*`` databases, as on the shared server.
    """

    kind = "mariadb"
    os_user = "mysql"
    stop_signal = signal.SIGTERM  # normal shutdown: end connections, flush
    user = "root"
    login_user = MYSQL_USER
    SQL_MODE = "STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION"
    SETTINGS: ClassVar[list[str]] = [
        "--innodb-buffer-pool-size=32M",
        "--innodb-log-file-size=16M",
        "--innodb-flush-log-at-trx-commit=2",  # written at commit (a crash of the server keeps it), never fsynced
        "--innodb-doublewrite=0",
        "--innodb-use-native-aio=0",  # no kernel AIO contexts to run out of with many servers
        "--skip-name-resolve",
        "--performance-schema=OFF",
        "--skip-log-bin",
        "--character-set-server=utf8mb4",
        "--collation-server=utf8mb4_general_ci",
        f"--sql-mode={SQL_MODE}",
        "--max-connections=151",
    ]

    @classmethod
    def find_binaries(cls) -> dict[str, str]:
        sbin = ["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin", "/usr/libexec"]
        found = {
            "server": _find(["mariadbd", "mysqld"], sbin),
            "install": _find(["mariadb-install-db", "mysql_install_db"], sbin),
        }
        missing = [name for name, path in found.items() if path is None]
        if missing:
            raise PrivateUnavailable(f"MariaDB binaries not found: {', '.join(missing)} "
                                     "(apt-get install mariadb-server)")
        return found  # type: ignore[return-value]

    @classmethod
    def _run_as(cls) -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        return _account(cls.os_user)  # None: run as root, with --user=root

    def _user_option(self) -> list[str]:
        return ["--user=root"] if os.geteuid() == 0 and self._account is None else []

    @classmethod
    def _build_template(cls, target: Path) -> None:
        server = cls(_template=False)
        try:
            with open(server.log_path, "ab") as output:
                done = server._spawn([server._binaries["install"], "--no-defaults", f"--datadir={server.data_dir}",
                                      "--auth-root-authentication-method=normal", "--skip-test-db",
                                      *server._user_option(), *cls.SETTINGS], output)
                if done.wait(120) != 0:
                    raise RuntimeError(f"mariadb-install-db failed; its log:\n{server.log()[-3000:]}")
            server.start()
            with contextlib.closing(server.connect(database=None)) as connection, connection.cursor() as cursor:
                cursor.execute("CREATE DATABASE test CHARACTER SET utf8mb4")
                for host in ("%", "localhost"):
                    cursor.execute("CREATE USER %s@%s IDENTIFIED BY %s", (cls.login_user, host, cls.login_password))
                    for database in ("test", r"sqlhttp\_test\_%%"):  # %% for PyMySQL's formatting
                        cursor.execute(f"GRANT ALL PRIVILEGES ON `{database}`.* TO %s@%s", (cls.login_user, host))
            server.stop()
            shutil.move(server.data_dir, target)
        finally:
            server.cleanup()

    def _command(self) -> list[str]:
        return [self._binaries["server"], "--no-defaults", f"--datadir={self.data_dir}", f"--port={self.port}",
                f"--bind-address={HOST}", f"--socket={self.socket_dir / 'mysqld.sock'}",
                f"--pid-file={self.dir / 'server.pid'}", f"--log-error={self.log_path}", f"--tmpdir={self.dir / 'tmp'}",
                *self._user_option(), *self.SETTINGS]

    def _ready(self, log_offset: int) -> bool:
        return "ready for connections" in _tail(self.log_path, log_offset)

    @property
    def url(self) -> str:
        """``mariadb://root@127.0.0.1:PORT/test``."""
        return f"mariadb://{self.user}@{HOST}:{self.port}/{self.database}"

    @property
    def sqlalchemy_url(self) -> str:
        """``mysql+pymysql://root@127.0.0.1:PORT/test?charset=utf8mb4``, the driver the tests use."""
        return f"mysql+pymysql://{self.user}@{HOST}:{self.port}/{self.database}?charset=utf8mb4"

    @property
    def target(self) -> str:
        """The middleware's ``targets`` entry: ``mariadb://127.0.0.1:PORT``."""
        return f"mariadb://{HOST}:{self.port}"

    def connect(self, **options: Any) -> Any:
        import pymysql

        params: dict[str, Any] = {"host": HOST, "port": self.port, "user": self.user, "password": "",
                                  "database": self.database, "charset": "utf8mb4", "connect_timeout": 5,
                                  "autocommit": True, **options}
        return pymysql.connect(**params)

    def database_for(self, key: str = "maria") -> Database:
        return Database(key, "mysql", "mariadb", self.login_user, self.login_password, self.database,
                        self.sqlalchemy_url)


# --- fixtures ---------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def started(cls: type[_S], **options: Any) -> Iterator[_S]:
    """A started server of ``cls``, cleaned up on exit; what is missing skips (fails under ``CI=true``)."""
    try:
        server = cls(**options)
    except PrivateUnavailable as exc:
        message = f"a private {cls.kind} server cannot be run here: {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


def private_postgres(name: str = "private_postgres", *, scope: Scope = "module", **options: Any) -> Any:
    """A pytest fixture named ``name`` that yields a started :class:`PrivatePostgres` (module-scoped by default).

    Assign it in a test module or conftest: ``pg = private_postgres("pg")``. It is handed over as it is: a test that
    leaves it frozen or stopped should call ``ensure_running()`` (or the next test should)."""

    @pytest.fixture(scope=scope, name=name)
    def fixture() -> Iterator[PrivatePostgres]:
        with started(PrivatePostgres, **options) as server:
            yield server

    return fixture


def private_mariadb(name: str = "private_mariadb", *, scope: Scope = "module", **options: Any) -> Any:
    """Like :func:`private_postgres`, for a :class:`PrivateMariaDB`."""

    @pytest.fixture(scope=scope, name=name)
    def fixture() -> Iterator[PrivateMariaDB]:
        with started(PrivateMariaDB, **options) as server:
            yield server

    return fixture


__all__ = [
    "PORT_RANGE",
    "PrivateMariaDB",
    "PrivatePostgres",
    "PrivateUnavailable",
    "free_private_port",
    "private_mariadb",
    "private_postgres",
    "started",
]
