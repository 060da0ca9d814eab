"""``wmlab ui``: the MLflow UI (``mlflow server``) on a store, in the foreground."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from wmlab.errors import WmlabError
from wmlab.tracking.store import artifact_root, client_for, sqlite_path, tracking_uri

DEFAULT_HOST = "127.0.0.1"


def _mlflow_command() -> list[str]:
    exe = Path(sys.executable).parent / "mlflow"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("mlflow")
    return [found] if found else [sys.executable, "-m", "mlflow"]


def check_port(host: str, port: int) -> None:
    """:class:`WmlabError` (one line) if nothing can listen on ``host:port``, e.g. because
    another server does (a port in TIME_WAIT is free, as for the server itself)."""
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError, ValueError) as e:
        raise WmlabError(f"cannot serve the MLflow UI on host {host!r}: {e}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise WmlabError(f"port {port} on {host} is in use (another MLflow UI?); "
                                 f"choose another with --port") from None
            raise WmlabError(f"cannot serve the MLflow UI on {host}:{port}: {e.strerror or e}") from None


def ui_command(store_uri: str | None, port: int = 5000,
               host: str = DEFAULT_HOST) -> tuple[list[str], dict[str, str]]:
    """The ``mlflow server`` command line and environment :func:`ui` runs (for tests/tools)."""
    uri = tracking_uri(store_uri)
    cmd = _mlflow_command() + [
        "server",
        "--backend-store-uri", uri,
        "--host", str(host),
        "--port", str(int(port)),
        "--workers", "1",
    ]
    root = artifact_root(uri)
    if root is not None:
        # Runs of a local store have file:// artifact URIs, which the server reads directly;
        # experiments created in the UI get the same root.
        cmd += ["--default-artifact-root", root, "--no-serve-artifacts"]
    env = dict(os.environ)
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    env.pop("MLFLOW_TRACKING_URI", None)
    return cmd, env


def ui(store_uri: str | None, port: int = 5000, host: str = DEFAULT_HOST) -> int:
    """Serve the MLflow UI on the store ``store_uri`` (resolved like :func:`tracking_uri`).

    Runs ``mlflow server`` in the foreground on ``http://<host>:<port>`` with one worker
    and no job execution (ready in about 5 s) until Ctrl+C; returns its exit code. A port
    something else listens on is a :class:`WmlabError`. If the store is already a tracking
    server (``http(s)://``), prints its address and returns 0. (MLflow answers requests
    for localhost and private addresses; see its ``--allowed-hosts`` beyond those.)
    """
    uri = tracking_uri(store_uri)
    if uri.startswith(("http://", "https://")):
        print(f"The tracking store is already an MLflow server: open {uri}")
        return 0
    check_port(host, port)
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        client_for(uri)  # create the store with wmlab's artifact root before the server does
    cmd, env = ui_command(uri, port, host)
    shown = f"[{host}]" if ":" in host else host
    print(f"MLflow UI on http://{shown}:{port} (store {uri}); Ctrl+C stops it", flush=True)
    proc = subprocess.Popen(cmd, env=env)
    previous = None
    if threading.current_thread() is threading.main_thread():
        # Pass a SIGTERM on to the server (it stops its uvicorn worker) instead of orphaning it.
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: proc.send_signal(signum))
    try:
        return proc.wait()
    except KeyboardInterrupt:
        # From a terminal the server got the same SIGINT; otherwise forward it.
        with contextlib.suppress(OSError):
            proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                return proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                return proc.wait()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
