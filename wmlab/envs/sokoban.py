"""Sokoban as an env family (``--env sokoban:7x7-2``), set up as in the I2A paper (Weber,
Racanière, Reichert et al. 2017, arXiv 1707.06203, Sec. 4 and appendix): push every box
onto a target in a room of walls; a fresh level every episode.

Tasks:

* ``HxW-N``: a room of H x W cells (walls included) with N boxes, generated at every reset
  (below); sides 5 to 16, N from 1 to (H + W) // 4 (3 in a 7x7 room, 5 in a 10x10 one).
  ``7x7-2`` is the small task that learns on a CPU, ``10x10-4`` the paper's.
* ``boxoban``: levels read from Boxoban-format files (DeepMind's Boxoban levels, Guez et
  al. 2018: 10x10, 4 boxes), a uniformly drawn one every reset. ``env.levels=PATH`` names
  a folder of ``*.txt`` files (or one file); nothing is downloaded. A file holds levels of
  10 rows of 10 characters, each after a ``; N`` line: ``#`` wall, `` `` floor, ``.``
  target, ``$`` box, ``*`` box on a target, ``@`` player, ``+`` player on a target. A
  malformed level is an :class:`EnvError` naming the file and line (row width, unknown
  character, not one player, as many boxes as targets, not solved, a border of walls).
  The files are read once per process and folder, when the first env is made (16 ms per
  file of 1,000 levels).

Rules: 5 actions, :data:`ACTIONS`: no-op, up, down, left, right (one-hot, as every
discrete wmlab env). The paper gives the rewards and the step limit; the action set is a
choice, the four moves and a no-op, as gym-sokoban's first five actions. A move into a box
pushes it one cell if the cell beyond is free (floor or target); a move into a wall, or a
push into a wall or another box, changes nothing. Rewards as in the paper: -0.1 every
step, +1 for a box pushed onto a target, -1 for one pushed off, +10 when every box is on a
target, which ends the episode (``terminated``).
``configs/envs/sokoban.yaml`` sets one move per policy step and the paper's 120-step
episodes (``env.action_repeat=1``, ``env.episode_steps=120``; truncated after that).

Observations (``env.obs``):

* ``state``: the room one-hot, ``float32 [7 * H * W]``; reshaped to ``[7, H, W]``,
  channel ``k`` is 1 where the cell is ``CELLS[k]``: 0 wall, 1 floor, 2 target, 3 box,
  4 box on target, 5 player, 6 player on target (:func:`grid_shape` gives ``(7, H, W)``
  of an env name, for a plugin that wants the grid back).
* ``pixels``: ``uint8 [3, S, S]`` (``env.grayscale``: ``[1, S, S]``), the room drawn with
  8x8-pixel sprites as in the paper (80x80 for 10x10) and resized with OpenCV to
  ``S = env.image_size``, 64 as every family (the size the pixel methods' decoders
  produce); ``env.image_size=80`` on a 10x10 room (56 on 7x7) keeps the sprites exact.
  ``env.state_too`` adds the one-hot room as the extra entry ``state``.

Every evaluation logs ``eval/solved_rate``, the fraction of its episodes that end solved
(:meth:`Sokoban.eval_metrics`).

Level generation (:class:`RoomGenerator`), after the paper's appendix, by playing the
game backwards so that every level is solvable by construction:

1. topology: a random walk carves floor out of a room of walls, a small random pattern
   (one cell, two, an L or a 2x2 square) at every step, turning at random;
2. N targets and the player on distinct random floor cells, a box on every target (the
   solved state);
3. reverse play: a depth-first search over *pulls* from the solved state (the player
   walks anywhere it can reach, then steps away from a box next to it, dragging the box
   into the cell it left: the reverse of a push), over states of boxes and the player's
   reachable area, up to 1,000 states. Each state is scored by the boxes' total distance
   from their own targets times the number of box swaps on the path that reached it
   (the runs of pulls of one box); the best state with no box on a target is the level,
   with the player on a random cell of its area. A room where the pulls cannot take every
   box off its target is drawn again.

Measured on the project machine (2 CPU cores shared with other jobs; ``python -m
wmlab.envs.sokoban`` re-measures; ranges over runs): generating a 7x7-2 level takes
0.6-1.0 ms (1,000-1,700 levels/s), a 10x10-4 one 15-24 ms; the gymnasium env makes
150,000-220,000 steps/s with random actions; through torchrl (``rand_action`` +
``step_and_maybe_reset``, whose own cost dominates) 730-1,600 policy steps/s from states
and 880-1,700 from 64x64 pixels.

A uniformly random policy on ``sokoban:7x7-2`` solves 4.4% of its levels with a mean
return of -10.93 (500 episodes of 120 steps, seed 0; 3.8-5.2% and -11.09 to -10.89 over
seeds 0-3, :func:`random_policy`): the baseline learning checks compare against. On
``10x10-4`` it solves 0.2% (-11.53).
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gymnasium
import numpy as np
import torch
from gymnasium import spaces
from torchrl.envs import InitTracker, TransformedEnv

from wmlab import keys
from wmlab.api import EnvSpecs
from wmlab.envs import EnvFamily, base_env, check_frames, step_rate
from wmlab.envs.gym import (GymnasiumTorchEnv, OneHotActions, _vector_entry, image_entry,
                            resize_frame, torch_env_specs)
from wmlab.errors import EnvError

__all__ = ["ACTIONS", "CELLS", "CHARS", "SPRITES", "LevelSet", "RoomGenerator", "Sokoban",
           "SokobanConfig", "SokobanEnv", "draw", "grid_shape", "load_levels", "max_boxes",
           "parse_levels", "parse_task", "random_policy"]

#: cell codes: the values of a room array and the channels of the one-hot observation
WALL, FLOOR, TARGET, BOX, BOX_ON_TARGET, PLAYER, PLAYER_ON_TARGET = range(7)
CELLS = ("wall", "floor", "target", "box", "box_on_target", "player", "player_on_target")
#: the actions, in the order of the one-hot entries
ACTIONS = ("noop", "up", "down", "left", "right")
#: Boxoban's characters of each cell code
CHARS = "# .$*@+"

STEP_REWARD, BOX_REWARD, SOLVED_REWARD = -0.1, 1.0, 10.0
#: room sides (walls included) a generated task may have; larger rooms generate slowly
MIN_SIDE, MAX_SIDE = 5, 16
#: side of a sprite, in pixels
SPRITE = 8
BOXOBAN_SIDE = 10
#: states the reverse play visits at most per room
SEARCH_STATES = 1_000

_TASK = re.compile(r"(\d+)x(\d+)-(\d+)")
_NAMED_TASKS = ("7x7-2", "10x10-4", "boxoban")


# --------------------------------------------------------------------------------------
# task names


def max_boxes(height: int, width: int) -> int:
    """The most boxes a generated room of ``height`` x ``width`` cells takes. More crowd
    the random walk's floor, and generating slows down until it stalls."""
    return (height + width) // 4


def parse_task(name: str) -> tuple[int, int, int] | None:
    """``(height, width, boxes)`` of a generated task ``HxW-N``, ``None`` for ``boxoban``;
    :class:`EnvError` for any other name or a room size or box count out of range."""
    if name == "boxoban":
        return None
    match = _TASK.fullmatch(name)
    if match is None:
        raise EnvError(f"unknown sokoban task {name!r}: tasks are HxW-N, a generated room of "
                       f"H x W cells (walls included) with N boxes, e.g. sokoban:7x7-2 or "
                       f"sokoban:10x10-4, or sokoban:boxoban (levels from the files in "
                       f"env.levels)")
    height, width, boxes = (int(g) for g in match.groups())
    if not (MIN_SIDE <= height <= MAX_SIDE and MIN_SIDE <= width <= MAX_SIDE):
        raise EnvError(f"sokoban:{name}: a room's sides are {MIN_SIDE} to {MAX_SIDE} cells "
                       f"(walls included), got {height}x{width}; e.g. sokoban:7x7-2, "
                       f"sokoban:10x10-4")
    most = max_boxes(height, width)
    if not 1 <= boxes <= most:
        raise EnvError(f"sokoban:{name}: a {height}x{width} room takes 1 to {most} boxes, "
                       f"got {boxes}")
    return height, width, boxes


def grid_shape(name: str) -> tuple[int, int, int]:
    """``(channels, height, width)`` of the one-hot room of the env ``name``
    (``sokoban:7x7-2``, ``7x7-2`` or ``boxoban``): the shape a ``state`` observation
    reshapes to."""
    task = parse_task(name.split(":", 1)[1] if name.startswith("sokoban:") else name)
    height, width = (BOXOBAN_SIDE, BOXOBAN_SIDE) if task is None else task[:2]
    return len(CELLS), height, width


# --------------------------------------------------------------------------------------
# level generation: rooms as bitboards (bit r * width + c is cell (r, c))

_DIRECTIONS = ((-1, 0), (1, 0), (0, -1), (0, 1))
#: what the random walk carves at each step, as (row, column) offsets
_PATTERNS = (((0, 0),), ((0, 0),), ((0, 0), (0, 1)), ((0, 0), (1, 0)),
             ((0, 0), (0, 1), (1, 0)), ((0, 0), (1, 0), (1, 1)),
             ((0, 0), (0, 1), (1, 0), (1, 1)))
#: probability that the walk turns at a step
_TURN = 0.35


def _cells_of(mask: int) -> list[int]:
    """The set bits of ``mask``, lowest first."""
    cells = []
    while mask:
        low = mask & -mask
        cells.append(low.bit_length() - 1)
        mask ^= low
    return cells


def _shift(mask: int, by: int) -> int:
    """``mask`` with every bit moved ``by`` places (negative: down)."""
    return mask << by if by >= 0 else mask >> -by


class RoomGenerator:
    """Random solvable rooms of ``height`` x ``width`` cells with ``boxes`` boxes (see the
    module docstring): called with a numpy ``Generator``, returns the room as cell codes,
    ``int8 [height, width]``; its border is walls."""

    def __init__(self, height: int, width: int, boxes: int):
        self.height, self.width, self.boxes = height, width, boxes
        self._walk_steps = int(1.5 * (height + width))
        self._pulls = (-width, width, -1, 1)  # a cell's neighbours up, down, left, right

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        rnd = random.Random(int(rng.integers(2**63)))
        while True:  # a room fails one time in six for 7x7-2, one in three for 10x10-4
            floor = self._carve(rnd)
            cells = _cells_of(floor)
            if len(cells) < self.boxes + 2:
                continue
            picks = rnd.sample(cells, self.boxes + 1)
            found = self._reverse_play(rnd, floor, tuple(picks[:-1]), picks[-1])
            if found is not None:
                return self._room(rnd, cells, picks[:-1], *found)

    def _carve(self, rnd: random.Random) -> int:
        """The floor of a random-walk room, as a bitboard."""
        h, w = self.height, self.width
        row, col = rnd.randint(1, h - 2), rnd.randint(1, w - 2)
        d_row, d_col = rnd.choice(_DIRECTIONS)
        floor = 0
        for _ in range(self._walk_steps):
            if rnd.random() < _TURN:
                d_row, d_col = rnd.choice(_DIRECTIONS)
            for dr, dc in rnd.choice(_PATTERNS):
                r, c = row + dr, col + dc
                if 1 <= r <= h - 2 and 1 <= c <= w - 2:
                    floor |= 1 << (r * w + c)
            while not (1 <= row + d_row <= h - 2 and 1 <= col + d_col <= w - 2):
                d_row, d_col = rnd.choice(_DIRECTIONS)
            row, col = row + d_row, col + d_col
        return floor

    def _reach(self, start: int, free: int) -> int:
        """The cells the player reaches from ``start`` (a bit) over ``free`` cells."""
        w, reach = self.width, start
        while True:
            grown = (reach | reach << 1 | reach >> 1 | reach << w | reach >> w) & free
            if grown == reach:
                return reach
            reach = grown

    def _distance(self, a: int, b: int) -> int:
        return abs(a // self.width - b // self.width) + abs(a % self.width - b % self.width)

    def _reverse_play(self, rnd: random.Random, floor: int, targets: tuple[int, ...],
                      player: int) -> tuple[tuple[int, ...], int] | None:
        """The best-scoring state with no box on a target that the pulls reach from the
        solved one, as (the boxes' cells in the order of their targets, the player's
        reachable cells), or ``None`` if there is none. Walls lie outside ``floor``, so a
        shift never wraps onto it."""
        solved = sum(1 << t for t in targets)
        pulls = list(self._pulls)
        stack = [(targets, player, 0, -1)]  # boxes, player, box swaps, last box pulled
        seen: set[tuple[int, int]] = set()
        best, best_score = None, 0
        while stack and len(seen) < SEARCH_STATES:
            boxes, player, swaps, last = stack.pop()
            occupied = sum(1 << b for b in boxes)
            free = floor & ~occupied
            reach = self._reach(1 << player, free)
            if (occupied, reach) in seen:
                continue
            seen.add((occupied, reach))
            if not occupied & solved:
                score = swaps * sum(self._distance(b, t) for b, t in zip(boxes, targets))
                if score > best_score:
                    best, best_score = (boxes, reach), score
            rnd.shuffle(pulls)
            for step in pulls:
                # boxes b with the player able to stand at b + step and back on to b + 2 step
                movable = occupied & _shift(reach, -step) & _shift(free, -2 * step)
                for b in _cells_of(movable):
                    i = boxes.index(b)
                    moved = boxes[:i] + (b + step,) + boxes[i + 1:]
                    stack.append((moved, b + 2 * step, swaps + (i != last), i))
        return best

    def _room(self, rnd: random.Random, floor: list[int], targets: list[int],
              boxes: tuple[int, ...], reach: int) -> np.ndarray:
        room = np.full(self.height * self.width, WALL, dtype=np.int8)
        room[floor] = FLOOR
        room[targets] = TARGET
        room[list(boxes)] += BOX - FLOOR
        room[rnd.choice(_cells_of(reach))] += PLAYER - FLOOR
        return room.reshape(self.height, self.width)


# --------------------------------------------------------------------------------------
# Boxoban level files

_CODE_OF = np.full(256, -1, dtype=np.int8)
_CODE_OF[np.frombuffer(CHARS.encode(), dtype=np.uint8)] = np.arange(len(CHARS), dtype=np.int8)
_LEGEND = ("'#' wall, ' ' floor, '.' target, '$' box, '*' box on target, '@' player, "
           "'+' player on target")


class LevelSet:
    """Levels to draw from: ``int8 [n, H, W]`` rooms as cell codes. Called with a numpy
    ``Generator``, returns a uniformly drawn one (a copy)."""

    def __init__(self, rooms: np.ndarray, source: str = ""):
        self.rooms, self.source = rooms, source

    def __len__(self) -> int:
        return len(self.rooms)

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        return self.rooms[int(rng.integers(len(self.rooms)))].copy()


def parse_levels(text: str, where: str, side: int = BOXOBAN_SIDE) -> np.ndarray:
    """The levels of a Boxoban-format file's ``text`` as ``int8 [n, side, side]`` cell codes;
    :class:`EnvError` naming ``where`` (the file) and the line of the first problem."""
    rows: list[str] = []
    starts: list[int] = []  # the line of each level's "; N" header
    count = 0  # rows of the current level so far
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith(";"):
            if starts and count != side:
                raise EnvError(_short_level(where, starts[-1], count, side))
            starts.append(number)
            count = 0
            continue
        if not line and (not starts or count in (0, side)):
            continue  # a blank line between levels
        if not starts:
            raise EnvError(f"{where}:{number}: expected a level's '; N' line first, got "
                           f"{line!r} (Boxoban files are levels of {side} rows, each after "
                           f"a '; N' line)")
        if count == side:
            raise EnvError(f"{where}:{number}: the level of line {starts[-1]} has more than "
                           f"{side} rows; Boxoban levels are {side} rows of {side} characters")
        if len(line) != side:
            raise EnvError(f"{where}:{number}: a row of {len(line)} characters; Boxoban rows "
                           f"are {side} characters ({_LEGEND})")
        bad = next((c for c in line if c not in CHARS), None)
        if bad is not None:
            raise EnvError(f"{where}:{number}: unknown character {bad!r} in column "
                           f"{line.index(bad) + 1}; valid: {_LEGEND}")
        rows.append(line)
        count += 1
    if starts and count != side:
        raise EnvError(_short_level(where, starts[-1], count, side))
    codes = _CODE_OF[np.frombuffer("".join(rows).encode(), dtype=np.uint8)]
    rooms = codes.reshape(len(starts), side, side)
    _check_rooms(rooms, where, starts)
    return rooms


def _short_level(where: str, start: int, count: int, side: int) -> str:
    return (f"{where}:{start}: the level of this line has {count} rows; Boxoban levels are "
            f"{side} rows of {side} characters")


def _check_rooms(rooms: np.ndarray, where: str, starts: list[int]) -> None:
    """One player, as many boxes as targets (at least one, not all on targets) and a
    border of walls in every room, or an :class:`EnvError` naming the first level that
    breaks one."""
    players = ((rooms == PLAYER) | (rooms == PLAYER_ON_TARGET)).sum((1, 2))
    boxes = ((rooms == BOX) | (rooms == BOX_ON_TARGET)).sum((1, 2))
    targets = np.isin(rooms, (TARGET, BOX_ON_TARGET, PLAYER_ON_TARGET)).sum((1, 2))
    border = np.ones(rooms.shape[1:], dtype=bool)
    border[1:-1, 1:-1] = False
    enclosed = (rooms[:, border] == WALL).all(1)
    solved = (rooms == BOX).sum((1, 2)) == 0
    for i in np.flatnonzero((players != 1) | (boxes != targets) | solved | ~enclosed):
        at = f"{where}:{starts[i]}: the level of this line"
        if players[i] != 1:
            raise EnvError(f"{at} has {players[i]} players; a level has one ('@', or '+' "
                           f"on a target)")
        if boxes[i] == 0:
            raise EnvError(f"{at} has no boxes ('$', or '*' on a target)")
        if boxes[i] != targets[i]:
            raise EnvError(f"{at} has {boxes[i]} boxes and {targets[i]} targets; a level "
                           f"has as many of each")
        if solved[i]:
            raise EnvError(f"{at} is solved already: every box is on a target")
        raise EnvError(f"{at} is open: the cells on its border must all be walls '#'")


def load_levels(path: str | Path) -> LevelSet:
    """The levels of the Boxoban-format files ``*.txt`` in the folder ``path`` (or of the
    file ``path``), read once per process as long as the files do not change;
    :class:`EnvError` if there are none or one is malformed."""
    if not str(path):
        raise EnvError("sokoban:boxoban needs env.levels=PATH: a folder of Boxoban level "
                       "files (*.txt, e.g. boxoban-levels/unfiltered/train) or one such file")
    path = Path(path).expanduser().resolve()
    if path.is_dir():
        files = sorted(p for p in path.glob("*.txt") if p.is_file())
    elif path.is_file():
        files = [path]
    else:
        raise EnvError(f"env.levels={str(path)!r} does not exist; it names a folder of "
                       f"Boxoban level files (*.txt) or one such file")
    if not files:
        raise EnvError(f"env.levels={str(path)!r} holds no level files (*.txt); it names a "
                       f"folder of Boxoban level files, e.g. boxoban-levels/unfiltered/train")
    stamp = tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    return _load(str(path), stamp)


@functools.lru_cache(maxsize=4)
def _load(path: str, stamp: tuple[tuple[str, int, int], ...]) -> LevelSet:
    rooms = []
    for name, _, _ in stamp:
        try:
            text = Path(name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise EnvError(f"cannot read the level file {name}: {type(e).__name__}: {e}") from e
        rooms.append(parse_levels(text, name))
    rooms = np.concatenate(rooms)
    if not len(rooms):
        raise EnvError(f"env.levels={path!r}: its files hold no levels ('; N' lines, each "
                       f"followed by {BOXOBAN_SIDE} rows)")
    return LevelSet(rooms, path)


# --------------------------------------------------------------------------------------
# sprites


def _sprite(rows: tuple[str, ...], colours: dict[str, tuple[int, int, int]],
            under: np.ndarray | None = None) -> np.ndarray:
    """An 8x8 RGB sprite from 8 rows of 8 characters naming ``colours``; ``'.'`` is
    ``under`` (black if none)."""
    out = np.zeros((SPRITE, SPRITE, 3), dtype=np.uint8) if under is None else under.copy()
    for r, row in enumerate(rows):
        for c, char in enumerate(row):
            if char != ".":
                out[r, c] = colours[char]
    return out


def _sprites() -> np.ndarray:
    """``uint8 [7, 8, 8, 3]``: the sprite of each cell code."""
    colours = {"w": (164, 84, 52), "m": (96, 52, 36),        # wall: bricks, mortar
               "t": (224, 48, 48),                            # target: a red square
               "y": (236, 188, 56), "o": (148, 100, 32),      # box: a yellow crate
               "g": (96, 212, 96), "k": (32, 120, 48),        # box on target: a green crate
               "p": (72, 164, 255)}                           # player: a blue figure
    wall = _sprite(("wwwmwwww", "wwwmwwww", "wwwmwwww", "mmmmmmmm",
                    "wwwwwwwm", "wwwwwwwm", "wwwwwwwm", "mmmmmmmm"), colours)
    floor = _sprite(("........",) * 8, colours)
    target = _sprite(("........", ".tttttt.", ".t....t.", ".t....t.",
                      ".t....t.", ".t....t.", ".tttttt.", "........"), colours)
    crate = ("oooooooo", "oyyyyyyo", "oyoyyoyo", "oyyooyyo",
             "oyyooyyo", "oyoyyoyo", "oyyyyyyo", "oooooooo")
    box = _sprite(crate, colours)
    green = tuple(row.replace("o", "k").replace("y", "g") for row in crate)
    box_on_target = _sprite(green, colours)
    figure = ("...pp...", "...pp...", ".pppppp.", "p.pppp.p",
              "..pppp..", "..p..p..", "..p..p..", ".pp..pp.")
    player = _sprite(figure, colours)
    player_on_target = _sprite(figure, colours, under=target)
    return np.stack([wall, floor, target, box, box_on_target, player, player_on_target])


SPRITES = _sprites()


def draw(room: np.ndarray) -> np.ndarray:
    """``uint8 [8 H, 8 W, 3]``: a room ``[H, W]`` of cell codes drawn with :data:`SPRITES`."""
    h, w = room.shape
    return SPRITES[room].transpose(0, 2, 1, 3, 4).reshape(h * SPRITE, w * SPRITE, 3)


# --------------------------------------------------------------------------------------
# the gymnasium env

_ONE_HOT = np.eye(len(CELLS), dtype=np.float32)


class SokobanEnv(gymnasium.Env):
    """Sokoban with a new level from ``levels`` (a :class:`RoomGenerator` or
    :class:`LevelSet`, called with the env's ``np_random``) at every reset; rooms of
    ``height`` x ``width`` cells with a border of walls. Observations are the one-hot room,
    ``float32 [7 * height * width]``; ``render()`` draws it, ``uint8 [8 height, 8 width, 3]``.
    Actions are ``Discrete(5)``, :data:`ACTIONS`. See the module docstring for the rules."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, levels: Callable[[np.random.Generator], np.ndarray], height: int,
                 width: int, render_mode: str | None = "rgb_array"):
        self._levels = levels
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0.0, 1.0, (len(CELLS) * height * width,),
                                            np.float32)
        self.action_space = spaces.Discrete(len(ACTIONS))
        self._room = np.full((height, width), WALL, dtype=np.int8)
        self._cells = self._room.reshape(-1)  # a view: the room, flat
        self._moves = (0, -width, width, -1, 1)
        self._player = 0
        self._left = 0  # boxes not on a target

    @property
    def room(self) -> np.ndarray:
        """The current room as cell codes (:data:`CELLS`), ``int8 [height, width]`` (a copy)."""
        return self._room.copy()

    @property
    def solved(self) -> bool:
        """Whether every box is on a target."""
        return self._left == 0

    def load(self, room: np.ndarray) -> None:
        """Play ``room`` (cell codes, ``[height, width]``, one player, a border of walls)
        from now on, as if a reset had drawn it."""
        self._room[...] = room
        self._player = int(np.flatnonzero(self._cells >= PLAYER)[0])
        self._left = int((self._cells == BOX).sum())

    def _observation(self) -> np.ndarray:
        return _ONE_HOT[self._room].transpose(2, 0, 1).reshape(-1)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.load(self._levels(self.np_random))
        return self._observation(), {}

    def step(self, action):
        reward, move = STEP_REWARD, self._moves[int(action)]
        cells, here = self._cells, self._player
        there = here + move
        if move and cells[there] in (BOX, BOX_ON_TARGET):
            beyond = there + move
            if cells[beyond] in (FLOOR, TARGET):
                if cells[there] == BOX_ON_TARGET:
                    reward -= BOX_REWARD
                    self._left += 1
                if cells[beyond] == TARGET:
                    reward += BOX_REWARD
                    self._left -= 1
                cells[beyond] += BOX - FLOOR
                cells[there] -= BOX - FLOOR
        if move and cells[there] in (FLOOR, TARGET):
            cells[there] += PLAYER - FLOOR
            cells[here] -= PLAYER - FLOOR
            self._player = there
        terminated = self._left == 0
        if terminated:
            reward += SOLVED_REWARD
        return self._observation(), reward, terminated, False, {}

    def render(self) -> np.ndarray:
        return draw(self._room)


# --------------------------------------------------------------------------------------
# the family


@dataclass
class SokobanConfig:
    """The sokoban family's keys of the ``env`` section (``env.levels=PATH``);
    configs/envs/sokoban.yaml sets the core ones (one move per step, 120-step episodes)."""

    levels: str = ""
    """For ``sokoban:boxoban``: a folder of Boxoban-format level files (``*.txt``, e.g.
    ``boxoban-levels/unfiltered/train``) or one such file; a level is drawn from all of
    them at every reset. Generated tasks take none."""
    state_too: bool = False
    """With ``env.obs=pixels``: also carry the one-hot room, as the extra entry ``state``."""


class Sokoban(EnvFamily):
    """Sokoban, ``sokoban:HxW-N`` (generated levels) or ``sokoban:boxoban`` (level files);
    see the module docstring."""

    description = ("Sokoban (I2A's rules), generated rooms sokoban:7x7-2, sokoban:10x10-4 "
                   "or Boxoban level files, sokoban:boxoban")
    Config = SokobanConfig

    def tasks(self) -> list[str]:
        """The named tasks; any ``HxW-N`` in range is one too (:meth:`validate`)."""
        return sorted(_NAMED_TASKS)

    def validate(self, name: str) -> str:
        """Return ``name`` if it is ``boxoban`` or a generated ``HxW-N`` in range, else
        raise :class:`EnvError` saying what is valid."""
        parse_task(name)
        return name

    def make(self, name: str, cfg: Any, *, seed: int) -> TransformedEnv:
        """Build the torchrl env of task ``name`` (see the module docstring); ``seed``
        seeds the levels drawn from the first reset on. Raises :class:`EnvError` for an
        unknown task, bad settings or bad level files."""
        task = parse_task(name)
        own = self.settings(cfg)
        obs_kind = str(cfg.obs)
        if obs_kind not in ("state", "pixels"):
            raise EnvError(f"env.obs={obs_kind!r} is not supported by sokoban envs: use state "
                           f"or pixels")
        repeat, episode_steps, image_size = check_frames(cfg, f"sokoban:{name}")
        if task is None:
            levels = load_levels(own.levels)
            height, width = levels.rooms.shape[1:]
        else:
            if own.levels:
                raise EnvError(f"env.levels is for sokoban:boxoban; sokoban:{name} generates "
                               f"its levels (drop env.levels)")
            height, width, boxes = task
            levels = RoomGenerator(height, width, boxes)
        env = SokobanEnv(levels, height, width)
        state = _vector_entry(env.observation_space, None)
        if obs_kind == "state":
            entries = {keys.OBSERVATION: state}
        else:
            pixels = image_entry(image_size, bool(cfg.grayscale), lambda raw, e: e.render())
            entries = {keys.OBSERVATION: pixels, **({"state": state} if own.state_too else {})}
        base = GymnasiumTorchEnv(env, name=name, repeat=repeat,
                                 policy_steps=episode_steps // repeat, entries=entries,
                                 actions=OneHotActions(len(ACTIONS)))
        base.set_seed(int(seed))
        return TransformedEnv(base, InitTracker())

    def specs(self, env, cfg) -> EnvSpecs:
        """:class:`EnvSpecs` of an env built by :meth:`make` with ``cfg``: one-hot actions
        over :data:`ACTIONS` (``discrete=True``)."""
        base = base_env(env, GymnasiumTorchEnv, "sokoban")
        return torch_env_specs(env, cfg, name=f"sokoban:{base.name}",
                               policy_steps=int(cfg.episode_steps) // int(cfg.action_repeat))

    def render(self, env, size: int) -> np.ndarray:
        """``uint8 [size, size, 3]``: the room drawn with the sprites, resized; black before
        the env's first reset."""
        if int(size) < 1:
            raise ValueError(f"size must be positive, got {size}")
        base = base_env(env, GymnasiumTorchEnv, "sokoban")
        if not base.started:
            return np.zeros((int(size), int(size), 3), dtype=np.uint8)
        return resize_frame(base.gym_env.render(), int(size))

    def eval_metrics(self, env: Any, last: Any) -> dict[str, float]:
        """``solved_rate``: 1 if the episode ended with every box on a target (the only way
        a sokoban episode terminates), else 0; averaged over the episodes."""
        return {"solved_rate": float(last.get(("next", "terminated")).any())}


# --------------------------------------------------------------------------------------
# measurements


def random_policy(task: str, episodes: int, *, steps: int = 120,
                  seed: int = 0) -> tuple[float, float]:
    """``(solved rate, mean return)`` of uniformly random actions on the generated task
    ``task`` over ``episodes`` episodes of at most ``steps`` steps."""
    height, width, boxes = parse_task(task)
    env = SokobanEnv(RoomGenerator(height, width, boxes), height, width)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    solved, total = 0, 0.0
    for _ in range(episodes):
        env.reset()
        for action in rng.integers(len(ACTIONS), size=steps):
            _, reward, terminated, _, _ = env.step(action)
            total += reward
            if terminated:
                solved += 1
                break
    return solved / episodes, total / episodes


def _benchmark(seconds: float = 3.0) -> None:
    """Print generation and step rates and the random policy's figures on this machine
    (``python -m wmlab.envs.sokoban``)."""
    import time

    from wmlab.config import env_config

    rng = np.random.default_rng(0)
    for task, count in (("7x7-2", 1000), ("10x10-4", 100)):
        generate = RoomGenerator(*parse_task(task))
        start = time.perf_counter()
        for _ in range(count):
            generate(rng)
        ms = (time.perf_counter() - start) / count * 1e3
        print(f"sokoban:{task}: {ms:.2f} ms per generated level ({1e3 / ms:.0f} levels/s)")
    env = SokobanEnv(RoomGenerator(7, 7, 2), 7, 7)
    env.reset(seed=0)
    actions = rng.integers(len(ACTIONS), size=100_000)
    start = time.perf_counter()
    for action in actions:
        if env.step(action)[2]:
            env.reset()
    print(f"sokoban:7x7-2 gymnasium env, state: "
          f"{len(actions) / (time.perf_counter() - start):.0f} steps/s (random actions)")
    family = Sokoban()
    for obs in ("state", "pixels"):
        cfg = env_config("sokoban:7x7-2", obs=obs, action_repeat=1, episode_steps=120)
        torch_env = family.make("7x7-2", cfg, seed=0)
        print(f"sokoban:7x7-2 torchrl env, {obs}: {step_rate(torch_env, seconds):.0f} policy "
              f"steps/s (random actions)")
        torch_env.close()
    for task, episodes in (("7x7-2", 500), ("10x10-4", 500)):
        rate, mean = random_policy(task, episodes)
        print(f"sokoban:{task} random policy: {rate:.1%} solved, mean return {mean:.2f} "
              f"({episodes} episodes of 120 steps, seed 0)")


if __name__ == "__main__":
    torch.set_num_threads(1)
    _benchmark()
