"""OpenGL for MuJoCo's offscreen rendering: checked before mujoco is imported, probed when
a command will render.

mujoco (and PyOpenGL under it) loads the backend named by ``MUJOCO_GL`` when it is first
imported, and a bad name or a missing library (``osmesa`` without libOSMesa) makes that
import fail, whoever imports it (torchrl does, for any env). :func:`prepare` runs before
anything imports mujoco: it sets ``MUJOCO_GL=egl`` when unset and, if the backend cannot
load, notes why and sets ``MUJOCO_GL=disable`` for this process, so that every command that
does not render (``wmlab list``, ``wmlab config``, state-based runs without videos) works.
A command that renders (pixel observations, videos) calls :func:`require` before any env
step: it fails in one line with what to install, or it makes and frees a small GL context
to be sure the backend works on this machine.
"""

from __future__ import annotations

import ctypes.util
import os
import sys

from wmlab.errors import EnvError

#: backends mujoco knows (``disable`` turns rendering off)
BACKENDS = ("egl", "osmesa", "glfw")
_LIBRARIES = {"egl": ("EGL", "libEGL.so.1"), "osmesa": ("OSMesa", "libOSMesa.so")}

_wanted: str | None = None
_problem: str | None = None


def wanted() -> str:
    """The backend the user asked for (``MUJOCO_GL`` as it was before :func:`prepare`)."""
    return _wanted if _wanted is not None else os.environ.get("MUJOCO_GL", "")


def problem() -> str | None:
    """Why the asked-for backend cannot load, if :func:`prepare` found a reason."""
    return _problem


def _static_problem(backend: str) -> str | None:
    if backend == "disable":
        return "MUJOCO_GL=disable turns rendering off"
    if backend not in BACKENDS:
        return f"MUJOCO_GL={backend or '(empty)'} is not a backend mujoco knows ({', '.join(BACKENDS)})"
    lib = _LIBRARIES.get(backend)
    if lib is not None and ctypes.util.find_library(lib[0]) is None:
        return f"{lib[1]} is not installed"
    return None


def prepare() -> None:
    """Check ``MUJOCO_GL`` before mujoco is imported (see the module docstring)."""
    global _wanted, _problem
    os.environ.setdefault("MUJOCO_GL", "egl")
    if _wanted is not None:  # prepared already
        return
    _wanted = os.environ["MUJOCO_GL"].strip().lower()
    _problem = _static_problem(_wanted)
    if _problem is not None and "mujoco" not in sys.modules:
        os.environ["MUJOCO_GL"] = "disable"


def message(reason: str, needed_for: str = "pixel observations and videos") -> str:
    """One line: what failed, and how to fix it."""
    return (f"cannot render with MUJOCO_GL={wanted() or '(unset)'}: {reason}. {needed_for[0].upper()}"
            f"{needed_for[1:]} need an OpenGL library: on Debian/Ubuntu install libegl1 and use "
            f"MUJOCO_GL=egl (the default), or install libosmesa6 and set MUJOCO_GL=osmesa (slower); "
            f"state-based runs work without it when videos are off (eval.video=false, or "
            f"wmlab eval --no-video)")


def require(needed_for: str) -> None:
    """:class:`EnvError` (one line) unless an offscreen GL context can be made now.
    ``needed_for`` says what renders (``"videos"``, ``"pixel observations"``)."""
    if _problem is not None:
        raise EnvError(message(_problem, needed_for))
    try:
        import mujoco

        context_cls = getattr(mujoco, "GLContext", None)
        if context_cls is None:
            raise RuntimeError("mujoco was imported without a GL backend")
        context = context_cls(16, 16)
        try:
            context.make_current()
        finally:
            context.free()
    except Exception as e:  # EGL and OSMesa failures surface as several types
        backend = wanted()
        lib = _LIBRARIES.get(backend)
        if lib is not None and ctypes.util.find_library(lib[0]) is None:
            reason = f"{lib[1]} is not installed"
        else:
            reason = " ".join(f"{type(e).__name__}: {e}".split())[:300]
        raise EnvError(message(reason, needed_for)) from None
