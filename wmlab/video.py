"""Writing rollout videos: H.264 mp4 through imageio-ffmpeg, GIF only as a fallback.

The mp4 is encoded ``libx264`` / ``yuv420p`` with ``+faststart`` so that browsers (and the
MLflow UI's artifact viewer) play it. ``yuv420p`` needs even sides: odd frames are padded
by one black row or column rather than resized.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def as_frames(frames: Any) -> np.ndarray:
    """Normalise a clip to a ``[T, H, W, 3]`` ``uint8`` array.

    Accepts numpy arrays or torch tensors, channels-last ``[T, H, W, 3]`` or channels-first
    ``[T, 3, H, W]`` (how pixel observations are stored), ``uint8`` or floats in ``[0, 1]``.
    Grayscale clips (one channel, ``[T, H, W, 1]`` or ``[T, 1, H, W]``, e.g. Atari
    observations) are repeated to three channels.
    """
    if hasattr(frames, "detach"):  # a torch tensor: one transfer to the host
        frames = frames.detach().cpu().numpy()
    arr = np.asarray(frames)
    if arr.ndim != 4:
        raise ValueError(f"video frames must be [T, H, W, 3], got shape {tuple(arr.shape)}")
    if arr.shape[-1] not in (1, 3) and arr.shape[1] in (1, 3):
        arr = arr.transpose(0, 2, 3, 1)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    if arr.shape[-1] != 3:
        raise ValueError(f"video frames must be RGB [T, H, W, 3], got shape {tuple(arr.shape)}")
    if arr.shape[0] == 0:
        raise ValueError("video has no frames")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating):
            arr = np.clip(arr * 255.0 + 0.5, 0, 255)
        else:
            arr = np.clip(arr, 0, 255)
        arr = arr.astype(np.uint8)
    return np.ascontiguousarray(arr)


def _pad_even(arr: np.ndarray) -> np.ndarray:
    _, h, w, _ = arr.shape
    ph, pw = h % 2, w % 2
    if ph or pw:
        arr = np.pad(arr, ((0, 0), (0, ph), (0, pw), (0, 0)))
    return np.ascontiguousarray(arr)


def ffmpeg_available() -> bool:
    """Whether imageio-ffmpeg and its ffmpeg binary can be used."""
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
        return True
    except Exception:  # ImportError, RuntimeError("No ffmpeg exe could be found")
        return False


def write_mp4(frames: Any, path: str | Path, fps: int = 30) -> Path:
    """Write ``frames`` (``[T, H, W, 3]`` ``uint8``) as an H.264 mp4 at ``path``.

    Returns the path actually written: ``path`` itself, or the same path with a ``.gif``
    suffix when ffmpeg is unavailable (a warning says so). Parent folders are created.
    """
    arr = _pad_even(as_frames(frames))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not ffmpeg_available():
        gif = path.with_suffix(".gif")
        log.warning("ffmpeg not available (pip install imageio-ffmpeg); writing %s instead", gif)
        return write_gif(arr, gif, fps=fps)

    import imageio_ffmpeg

    _, h, w, _ = arr.shape
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (w, h),
        pix_fmt_in="rgb24",
        pix_fmt_out="yuv420p",
        fps=fps,
        codec="libx264",
        quality=8,
        macro_block_size=1,  # sides are even already; never let it resize
        ffmpeg_log_level="error",
        output_params=["-movflags", "+faststart"],
    )
    writer.send(None)  # start the ffmpeg process
    try:
        for frame in arr:
            writer.send(frame)
    finally:
        writer.close()
    return path


def write_gif(frames: Any, path: str | Path, fps: int = 30) -> Path:
    """Write ``frames`` as an animated GIF (slower and larger than mp4; the fallback)."""
    import imageio.v2 as imageio

    arr = as_frames(frames)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(str(path), list(arr), format="GIF", duration=1000.0 / fps, loop=0)
    return path
