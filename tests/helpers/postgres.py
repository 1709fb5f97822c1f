"""A throwaway PostgreSQL cluster with pgvector for tests and benchmarks: initdb into a temp folder,
listen on a free loopback port, stop and delete on exit.

Where the binaries come from (first that has pgvector): $SLM_TEST_PG_BIN, a Debian/Ubuntu
/usr/lib/postgresql/*/bin with postgresql-NN-pgvector, the `pgserver` wheel from the test extra
(PostgreSQL 16 + pgvector 0.6; Debian bookworm packages no pgvector). PostgreSQL refuses
to run as root: as root the cluster runs as the `postgres` user if there is one, else as `nobody`.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def find_pg_bin() -> Path | None:
    """A folder holding initdb, pg_ctl and postgres whose installation has the vector extension."""
    candidates: list[Path] = []
    if os.environ.get("SLM_TEST_PG_BIN"):
        candidates.append(Path(os.environ["SLM_TEST_PG_BIN"]))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    spec = importlib.util.find_spec("pgserver")  # located, not imported: importing it has side effects
    if spec is not None and spec.submodule_search_locations:
        candidates.append(Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin")
    for folder in candidates:
        if (folder / "initdb").is_file() and _has_pgvector(folder):
            return folder
    return None


def _has_pgvector(bin_dir: Path) -> bool:
    try:
        share = subprocess.run([str(bin_dir / "pg_config"), "--sharedir"], capture_output=True, text=True,
                               check=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        share = str(bin_dir.parent / "share" / "postgresql")
    return (Path(share) / "extension" / "vector.control").is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgCluster:
    """`start()` → `dsn`; `stop()` removes everything. Superuser `slm`, trust auth on loopback only."""

    def __init__(self, bin_dir: Path):
        self.bin_dir = Path(bin_dir)
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="slm-pg-"))
        self.data = self.dir / "data"
        self._user = None
        if os.geteuid() == 0:
            self._user = "postgres" if _user_exists("postgres") else "nobody"
            entry = pwd.getpwnam(self._user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self.dsn = f"postgresql://slm@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 120) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self._user is not None:
            command = ["runuser", "-u", self._user, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.dir)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n"
                               f"{self._log_tail()}")

    def start(self) -> "PgCluster":
        self._run("initdb", "-D", str(self.data), "-U", "slm", "-A", "trust", "-E", "UTF8", "--no-sync",
                  "--locale=C")
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c shared_buffers=64MB")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.dir / "server.log"), "-w",
                  "-t", "60", "start")
        return self

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").is_file():
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _log_tail(self) -> str:
        log = self.dir / "server.log"
        return log.read_text(errors="replace")[-3000:] if log.is_file() else ""

    def __enter__(self) -> "PgCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
