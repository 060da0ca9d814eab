"""A Sokoban solver for the sokoban family's tests: a best-first search over pushes (the
boxes' summed distance to their nearest targets first), whose solution comes back as the
actions (indices into ``wmlab.envs.sokoban.ACTIONS``) that play it."""

from __future__ import annotations

import heapq
from collections import deque

import numpy as np

# cell codes of wmlab.envs.sokoban, spelt out so that the solver does not use the env's code
WALL, TARGET, BOX, BOX_ON_TARGET, PLAYER, PLAYER_ON_TARGET = 0, 2, 3, 4, 5, 6
MOVES = {1: (-1, 0), 2: (1, 0), 3: (0, -1), 4: (0, 1)}  # up, down, left, right


def _walk(start, goal, walls, boxes):
    """The moves from ``start`` to ``goal`` around walls and boxes (breadth-first), or None."""
    paths = {start: []}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        if cell == goal:
            return paths[cell]
        for action, (dr, dc) in MOVES.items():
            nxt = (cell[0] + dr, cell[1] + dc)
            if nxt not in paths and nxt not in walls and nxt not in boxes:
                paths[nxt] = paths[cell] + [action]
                queue.append(nxt)
    return None


def _area(start, walls, boxes):
    """Every cell the player reaches from ``start``."""
    seen = {start}
    stack = [start]
    while stack:
        r, c = stack.pop()
        for dr, dc in MOVES.values():
            nxt = (r + dr, c + dc)
            if nxt not in seen and nxt not in walls and nxt not in boxes:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def solve(room: np.ndarray, max_states: int = 200_000) -> list[int] | None:
    """The actions of a solution, or None if there is none (or the search passes
    ``max_states`` states of boxes and the player's area)."""
    cells = {(r, c): int(v) for (r, c), v in np.ndenumerate(room)}
    walls = {p for p, v in cells.items() if v == WALL}
    targets = frozenset(p for p, v in cells.items()
                        if v in (TARGET, BOX_ON_TARGET, PLAYER_ON_TARGET))
    boxes = frozenset(p for p, v in cells.items() if v in (BOX, BOX_ON_TARGET))
    player = next(p for p, v in cells.items() if v in (PLAYER, PLAYER_ON_TARGET))

    def distance(boxes):
        return sum(min(abs(b[0] - t[0]) + abs(b[1] - t[1]) for t in targets) for b in boxes)

    start = (boxes, player)
    parents = {(boxes, min(_area(player, walls, boxes))): None}
    queue = [(distance(boxes), 0, start)]
    count = 0
    while queue and len(parents) <= max_states:
        _, _, (boxes, player) = heapq.heappop(queue)
        if boxes == targets:
            return _actions(parents, start, (boxes, player), walls)
        area = _area(player, walls, boxes)
        for box in boxes:
            for action, (dr, dc) in MOVES.items():
                stand, dest = (box[0] - dr, box[1] - dc), (box[0] + dr, box[1] + dc)
                if stand in area and dest not in walls and dest not in boxes:
                    moved = boxes - {box} | {dest}
                    key = (moved, min(_area(box, walls, moved)))
                    if key not in parents:
                        parents[key] = ((boxes, player), stand, action)
                        count += 1
                        heapq.heappush(queue, (distance(moved), count, (moved, box)))
    return None


def _actions(parents, start, end, walls) -> list[int]:
    """Replay the pushes that lead from ``start`` to ``end`` as moves."""
    pushes = []
    state = end
    while state != start:
        before, stand, action = parents[(state[0], min(_area(state[1], walls, state[0])))]
        pushes.append((before, stand, action))
        state = before
    actions = []
    for (boxes, player), stand, action in reversed(pushes):
        actions += _walk(player, stand, walls, boxes) + [action]
    return actions
