"""``wmlab ui`` (the MLflow UI on a store) and ``wmlab server`` (a tracking server that runs
on other machines and processes log to), each ``mlflow server`` in the foreground."""

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
    if not 1 <= int(port) <= 65535:
        raise WmlabError(f"--port must be between 1 and 65535, got {port}")
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


def server_command(store_uri: str | None, port: int = 5000, host: str = DEFAULT_HOST, *,
                   artifacts: str | None = None, workers: int = 1,
                   allowed_hosts: str | None = None) -> tuple[list[str], dict[str, str]]:
    """The ``mlflow server`` command line and environment :func:`server` runs.

    The backend store is ``store_uri`` (resolved like :func:`tracking_uri`: the local SQLite
    store ``./mlflow/mlflow.db`` by default, or a database URL such as
    ``postgresql://user@host/db``). The server proxies artifacts (``--serve-artifacts``):
    clients upload and download them through it, and it keeps them under ``artifacts``
    (default: the store's ``artifacts/`` folder for a SQLite store, ``./mlflow/artifacts``
    otherwise)."""
    uri = tracking_uri(store_uri)
    if uri.startswith(("http://", "https://")):
        raise WmlabError(f"the store {uri} is a tracking server already; give a database "
                         f"(--backend-store-uri sqlite:///PATH or a database URL)")
    if artifacts is None:
        root = artifact_root(uri)
        artifacts = root if root is not None else (Path.cwd() / "mlflow" / "artifacts").as_uri()
    elif "://" not in artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        artifacts = Path(artifacts).resolve().as_uri()
    cmd = _mlflow_command() + [
        "server",
        "--backend-store-uri", uri,
        "--host", str(host),
        "--port", str(int(port)),
        "--workers", str(int(workers)),
        "--serve-artifacts",
        "--artifacts-destination", artifacts,
    ]
    if allowed_hosts:
        cmd += ["--allowed-hosts", allowed_hosts]
    env = dict(os.environ)
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    env.pop("MLFLOW_TRACKING_URI", None)
    if uri.startswith("sqlite:"):
        # every request opens its own SQLite connection: with SQLAlchemy's default pool (5 + 10
        # connections) the requests of a few runs logging at once, each waiting on SQLite's
        # write lock, used up the pool and failed after its 30 s timeout
        env.setdefault("MLFLOW_SQLALCHEMYSTORE_POOLCLASS", "NullPool")
    return cmd, env


def server(store_uri: str | None, port: int = 5000, host: str = DEFAULT_HOST, *,
           artifacts: str | None = None, workers: int = 1, allowed_hosts: str | None = None) -> int:
    """Run an MLflow tracking server on ``store_uri`` in the foreground until Ctrl+C or
    SIGTERM; returns its exit code. Runs reach it with ``MLFLOW_TRACKING_URI=http://HOST:PORT``.
    A port in use is a :class:`WmlabError`."""
    from wmlab.preflight import store_scheme

    if workers < 1:
        raise WmlabError(f"--workers must be at least 1, got {workers}")
    check_port(host, port)
    uri = tracking_uri(store_uri)
    if not uri.startswith(("http://", "https://")):  # (server_command says what is wrong with these)
        store_scheme(uri, "--backend-store-uri" if store_uri else "$MLFLOW_TRACKING_URI")
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        client_for(uri)  # create the store (tables, Default experiment) before the server does
    cmd, env = server_command(uri, port, host, artifacts=artifacts, workers=workers,
                              allowed_hosts=allowed_hosts)
    shown = f"[{host}]" if ":" in host else host
    reach = "localhost" if host in ("0.0.0.0", "::") else shown
    print(f"MLflow tracking server on http://{shown}:{port} (store {uri}; artifacts "
          f"{cmd[cmd.index('--artifacts-destination') + 1]}); runs log to it with "
          f"MLFLOW_TRACKING_URI=http://{reach}:{port}; Ctrl+C stops it", flush=True)
    return _foreground(cmd, env)


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
    from wmlab.preflight import store_scheme

    store_scheme(uri, "$MLFLOW_TRACKING_URI" if store_uri is None else "the store")
    check_port(host, port)
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        client_for(uri)  # create the store with wmlab's artifact root before the server does
    cmd, env = ui_command(uri, port, host)
    shown = f"[{host}]" if ":" in host else host
    print(f"MLflow UI on http://{shown}:{port} (store {uri}); Ctrl+C stops it", flush=True)
    return _foreground(cmd, env)


def _foreground(cmd: list[str], env: dict[str, str]) -> int:
    """Run ``cmd`` until it ends, Ctrl+C or SIGTERM (passed on to it); its exit code."""
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
