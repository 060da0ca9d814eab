"""Checks a command runs before its first env step, so that a setup problem costs seconds
and one line (exit 2) rather than a traceback after hours of training.

* :func:`writable_folder`: the checkpoint folder (and the local MLflow store) can be
  created and written to;
* :func:`tracking_store`: a local store is writable, a tracking server answers within
  :data:`SERVER_TIMEOUT_S` seconds (MLflow's own retries would take minutes);
* :func:`rendering`: an OpenGL context can be made when the run renders through MuJoCo
  (:func:`wmlab.gl.require`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from wmlab.errors import EnvError, WmlabError

#: seconds a tracking server has to answer the probe
SERVER_TIMEOUT_S = 5.0


def writable_folder(folder: str | Path, what: str, setting: str) -> Path:
    """:class:`WmlabError` naming ``what`` and the ``setting`` that chose ``folder`` unless a
    file can be written in it, or, while it does not exist, in the nearest folder above it
    that does (where it would be created). Leaves nothing behind."""
    path = Path(folder).expanduser()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "it is" if existing == path else f"{existing} is"
        raise WmlabError(f"cannot write {what} to {path}: {where} a file, not a folder ({setting})")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".wmlab-write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        reason = e.strerror or type(e).__name__
        where = "" if existing == path else f" (in {existing})"
        raise WmlabError(f"cannot write {what} to {path}{where}: {reason} ({setting}); "
                         f"choose a folder you can write to") from None
    return path


def _tracking_setting(cfg_uri: str | None) -> str:
    if cfg_uri:
        return "tracking.uri"
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return "$MLFLOW_TRACKING_URI"
    return "the default local store; tracking.uri=URI chooses another"


def probe_server(uri: str, setting: str, timeout: float | None = None) -> None:
    """:class:`WmlabError` unless an MLflow tracking server answers at ``uri`` within
    ``timeout`` seconds (default :data:`SERVER_TIMEOUT_S`): its ``/health`` must say OK, or
    ask for credentials (401, 403: MLflow's client brings them)."""
    import urllib.error
    import urllib.request

    url = uri.rstrip("/") + "/health"
    fix = f"start it, or unset {setting} to use the local store ./mlflow/"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="GET"),
                                    timeout=SERVER_TIMEOUT_S if timeout is None else timeout):
            return
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            return
        raise WmlabError(f"{uri} ({setting}) answered HTTP {e.code} at /health: it is not an MLflow "
                         f"tracking server; {fix}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        reason = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
        raise WmlabError(f"cannot reach the MLflow tracking server {uri} ({setting}): {reason}; "
                         f"{fix}") from None


def existing_store() -> tuple[str | None, str]:
    """The store that commands reading runs (``--resume``, ``--checkpoint``, ``compare``)
    look in, checked; ``(None, its path)`` if it is a local store that does not exist yet, so
    no run can be found there (and none is made by looking)."""
    from wmlab.tracking.store import local_store_uri, sqlite_path

    uri = os.environ.get("MLFLOW_TRACKING_URI") or local_store_uri()
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        return None, str(db)
    return tracking_store(None), uri


def tracking_store(cfg_uri: str | None) -> str:
    """Check the store runs go to (resolved like :func:`wmlab.tracking.tracking_uri`);
    returns its URI."""
    from wmlab.tracking.store import ARTIFACTS_DIR, local_store_uri, sqlite_path

    uri = cfg_uri or os.environ.get("MLFLOW_TRACKING_URI") or local_store_uri()
    setting = _tracking_setting(cfg_uri)
    if uri.startswith(("http://", "https://")):
        probe_server(uri, setting)
        return uri
    db = sqlite_path(uri)
    if db is not None:
        writable_folder(db.parent, "the MLflow store", setting)
        writable_folder(db.parent / ARTIFACTS_DIR, "MLflow artifacts", setting)
        if db.exists() and not os.access(db, os.W_OK):
            raise WmlabError(f"cannot write the MLflow store {db}: it is read-only ({setting})")
        return uri
    if uri.startswith("file:") or "://" not in uri:
        from mlflow.environment_variables import MLFLOW_ALLOW_FILE_STORE

        if not MLFLOW_ALLOW_FILE_STORE.get():
            raise WmlabError(f"the MLflow store {uri} is a folder (MLflow's file store), which this "
                             f"MLflow refuses ({setting}); use a database, e.g. "
                             f"tracking.uri=sqlite:///PATH/mlflow.db, or set MLFLOW_ALLOW_FILE_STORE=true")
        folder = uri.removeprefix("file://").removeprefix("file:")
        writable_folder(folder, "the MLflow store", setting)
        return uri
    store_scheme(uri, setting)
    return uri


def store_scheme(uri: str, setting: str) -> None:
    """:class:`WmlabError` unless MLflow has a store for the scheme of ``uri`` (``sqlite``,
    another database, a tracking server, or one an MLflow plugin adds)."""
    from importlib.metadata import entry_points

    from mlflow.store.db.db_types import DATABASE_ENGINES
    from mlflow.utils.uri import get_uri_scheme

    scheme = get_uri_scheme(uri)
    plugins = sorted({ep.name for ep in entry_points(group="mlflow.tracking_store")})
    known = [*DATABASE_ENGINES, "http", "https", "file", "databricks", *plugins]
    if scheme and scheme not in known:
        raise WmlabError(f"the MLflow store {uri} ({setting}) has an unknown scheme {scheme!r}; valid: "
                         f"{', '.join(known)} (e.g. sqlite:///PATH/mlflow.db, postgresql://USER@HOST/DB)")


def _video(cfg: Any) -> bool:
    """Whether a fit of ``cfg`` records eval videos."""
    return bool(cfg.eval.video) and (cfg.eval.every > 0 or bool(cfg.eval.final))


def _needed_for(pixels: bool) -> str:
    return "pixel observations" if pixels else "videos (eval.video)"


def rendering(family: Any, task: str, env_cfg: Any, *, video: bool) -> None:
    """Make sure rendering works if this run renders (pixel observations, or ``video``)
    through MuJoCo's OpenGL; nothing otherwise (GL is not touched)."""
    pixels = str(env_cfg.obs) == "pixels"
    if not (pixels or video):
        return
    uses_gl = getattr(family, "uses_gl", None)
    if uses_gl is None or not uses_gl(task, env_cfg):
        return
    from wmlab import gl

    gl.require(_needed_for(pixels))


def rendering_early(cfg: Any, env: str) -> None:
    """Before any plugin is imported: a run that renders, of a family that renders every
    task through OpenGL (the plugin index says so), with a ``MUJOCO_GL`` backend that
    cannot load (an unknown name, a missing library; found without loading it)."""
    from wmlab import gl, plugin_index

    pixels = str(cfg.env.get("obs", "")) == "pixels"
    if (pixels or _video(cfg)) and gl.problem() is not None and plugin_index.always_uses_gl(env):
        raise EnvError(gl.message(gl.problem(), _needed_for(pixels)))


def storage(cfg: Any, *, run_id: str | None = None) -> None:
    """The checkpoint folder (a resumed run's own too) and the tracking store of ``cfg``."""
    writable_folder(cfg.checkpoint.dir, "checkpoints", "checkpoint.dir")
    if run_id is not None:  # a resumed run writes into its existing folder
        folder = Path(cfg.checkpoint.dir).expanduser() / run_id
        if folder.exists():
            writable_folder(folder, "checkpoints", "checkpoint.dir")
    tracking_store(cfg.tracking.uri)


def fit(cfg: Any, family: Any, task: str, *, run_id: str | None = None) -> None:
    """Everything ``wmlab fit`` needs, checked before the envs are built."""
    from wmlab.loop import check_compile

    check_compile(cfg.run.compile)
    storage(cfg, run_id=run_id)
    rendering(family, task, cfg.env, video=_video(cfg))
