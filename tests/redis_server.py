"""A real ``redis-server`` on a free loopback port in a folder of its own (tests, benchmarks).

The server persists to an append-only file in its folder (by default fsync on every write), so
a restart on the same folder (:meth:`RedisServer.restart`) comes back with what was written, as
a production Redis with ``appendonly yes`` does.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

#: The server binary, or None when it is not installed (``apt-get install redis-server``).
REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server child process; ``url`` is its ``redis://`` URL (database 0)."""

    def __init__(self, folder: Path, *, persist: bool = True, fsync: str = "always") -> None:
        if REDIS_SERVER is None:
            raise RuntimeError("redis-server is not installed")
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.persist = persist
        self.fsync = fsync
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        """Start the server (on the same port and folder) and wait until it answers."""
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.folder), "--save", "", "--protected-mode", "no"]
        if self.persist:
            args += ["--appendonly", "yes", "--appendfsync", self.fsync]
        with (self.folder / "redis.log").open("ab") as log:
            self._process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start; see {self.folder / 'redis.log'}")

    def stop(self) -> None:
        """Kill the server (SIGKILL: nothing is flushed beyond what fsync already wrote)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()
