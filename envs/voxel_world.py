"""Block types and procedural generation for the embedded voxel world.

The world is a ``(size, height, size)`` grid of block ids indexed ``[x, y, z]`` (Minecraft axes: ``x`` east,
``y`` up, ``z`` south). It wraps around horizontally (a torus), so there is no world edge: positions and rays
use ``x % size`` and ``z % size``. ``y == 0`` is unbreakable bedrock.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .errors import EnvArgumentError


@dataclass(frozen=True)
class BlockType:
    """One kind of block.

    Attributes:
        name: Minecraft 1.16 block name (as used by MineRL).
        drop: item added to the inventory when the block is broken by hand, or ``None`` for no drop
            (Minecraft drops nothing for stone/ores mined without a pickaxe, or for leaves without shears).
        break_ticks: attack ticks (steps) needed by hand, or ``None`` if unbreakable. Values follow Minecraft's
            hand-mining formula: ``hardness * 30`` ticks when the block is harvestable by hand, else ``* 100``.
        top, side, bottom: base RGB colours of the faces (textures add per-texel variation).
    """

    name: str
    drop: Optional[str]
    break_ticks: Optional[int]
    top: tuple[int, int, int]
    side: tuple[int, int, int]
    bottom: tuple[int, int, int]


AIR, GRASS, DIRT, STONE, BEDROCK, SAND, GRAVEL, COAL_ORE, OAK_LOG, OAK_LEAVES, BIRCH_LOG, BIRCH_LEAVES = range(12)

BLOCKS: tuple[BlockType, ...] = (
    BlockType("air", None, None, (0, 0, 0), (0, 0, 0), (0, 0, 0)),
    BlockType("grass_block", "dirt", 18, (110, 170, 70), (134, 96, 67), (134, 96, 67)),
    BlockType("dirt", "dirt", 15, (134, 96, 67), (134, 96, 67), (134, 96, 67)),
    BlockType("stone", None, 150, (125, 125, 125), (125, 125, 125), (125, 125, 125)),
    BlockType("bedrock", None, None, (85, 85, 85), (85, 85, 85), (85, 85, 85)),
    BlockType("sand", "sand", 15, (219, 207, 163), (219, 207, 163), (219, 207, 163)),
    BlockType("gravel", "gravel", 18, (136, 126, 126), (136, 126, 126), (136, 126, 126)),
    BlockType("coal_ore", None, 300, (115, 115, 115), (115, 115, 115), (115, 115, 115)),
    BlockType("oak_log", "oak_log", 60, (176, 143, 87), (102, 81, 50), (176, 143, 87)),
    BlockType("oak_leaves", None, 6, (60, 125, 40), (60, 125, 40), (60, 125, 40)),
    BlockType("birch_log", "birch_log", 60, (196, 180, 125), (216, 215, 210), (196, 180, 125)),
    BlockType("birch_leaves", None, 6, (100, 145, 70), (100, 145, 70), (100, 145, 70)),
)

LOG_BLOCKS = (OAK_LOG, BIRCH_LOG)
#: Items the embedded world can put into the inventory (the observation's ``inventory`` keys).
INVENTORY_ITEMS: tuple[str, ...] = tuple(sorted({b.drop for b in BLOCKS if b.drop}))
LOG_ITEMS: tuple[str, ...] = tuple(BLOCKS[b].drop for b in LOG_BLOCKS)


@dataclass
class World:
    """A generated world: the block grid plus what generation knows about it."""

    blocks: np.ndarray  # uint8 (size, height, size)
    heightmap: np.ndarray  # int (size, size): y of the topmost terrain block (trees excluded)
    spawn: tuple[float, float, float]  # feet position of the player
    spawn_yaw: float
    trees: list[tuple[int, int, int]]  # (x, y_bottom_log, z) of each tree
    _top: Optional[int] = field(default=None, repr=False)

    @property
    def top(self) -> int:
        """One above the highest solid layer at generation (blocks are only ever removed, so it stays valid)."""
        if self._top is None:
            rows = np.nonzero((self.blocks != AIR).any(axis=(0, 2)))[0]
            self._top = int(rows.max()) + 1 if len(rows) else 0
        return self._top

    @property
    def size(self) -> int:
        return self.blocks.shape[0]

    @property
    def height(self) -> int:
        return self.blocks.shape[1]

    def block_at(self, x: int, y: int, z: int) -> int:
        """Block id at integer coordinates (wrapping x/z; air above the grid, bedrock below)."""
        if y < 0:
            return BEDROCK
        if y >= self.height:
            return AIR
        return int(self.blocks[x % self.size, y, z % self.size])


def _periodic_heightmap(rng: np.random.Generator, size: int, base: float, amplitude: float) -> np.ndarray:
    """Smooth rolling hills that tile seamlessly: a sum of integer-frequency sinusoids."""
    coords = np.arange(size) / size
    height = np.full((size, size), base)
    for _ in range(6):
        fx, fz = rng.integers(-3, 4, size=2)
        if fx == 0 and fz == 0:
            fx = 1
        phase = rng.uniform(0, 2 * np.pi)
        weight = amplitude * rng.uniform(0.3, 1.0) / np.hypot(fx, fz)
        height += weight * np.sin(2 * np.pi * (fx * coords[:, None] + fz * coords[None, :]) + phase)
    return np.round(height).astype(np.int64)


def _place_tree(blocks: np.ndarray, rng: np.random.Generator, x: int, y0: int, z: int, birch: bool) -> None:
    """Trunk of 5-7 logs starting at ``y0`` with a Minecraft-oak-like leaf crown above head height."""
    size = blocks.shape[0]
    log, leaves = (BIRCH_LOG, BIRCH_LEAVES) if birch else (OAK_LOG, OAK_LEAVES)
    trunk = int(rng.integers(5, 8))
    for level in range(trunk - 3, trunk + 1):
        radius = 2 if level < trunk - 1 else 1
        y = y0 + level
        for dx in range(-radius, radius + 1):
            for dz in range(-radius, radius + 1):
                corner = abs(dx) == radius and abs(dz) == radius
                if corner and (level == trunk or rng.random() < 0.5):
                    continue
                bx, bz = (x + dx) % size, (z + dz) % size
                if blocks[bx, y, bz] == AIR:
                    blocks[bx, y, bz] = leaves
    blocks[x, y0:y0 + trunk, z] = log


def generate_world(seed: int, size: int = 64, height: int = 32, n_trees: int = 24) -> World:
    """Generate a world deterministically from ``seed``.

    Args:
        seed: any non-negative int; equal seeds give identical worlds.
        size: horizontal extent (power of two, >= 16); the world wraps around.
        height: vertical extent (>= 24).
        n_trees: number of trees to try to place (fewer if there is no room).
    """
    if size < 16 or size & (size - 1):
        raise EnvArgumentError(f"size must be a power of two >= 16, got {size}")
    if height < 24:
        raise EnvArgumentError(f"height must be >= 24, got {height}")
    rng = np.random.default_rng(seed)
    heightmap = np.clip(_periodic_heightmap(rng, size, base=height * 0.35, amplitude=3.0), 3, height - 12)
    ys = np.arange(height)[None, :, None]
    top = heightmap[:, None, :]
    blocks = np.zeros((size, height, size), np.uint8)
    blocks[ys <= top] = STONE
    blocks[(ys > top - 4) & (ys <= top)] = DIRT
    blocks[ys == top] = GRASS
    low = heightmap <= np.percentile(heightmap, 12)  # sandy lowlands
    blocks[np.broadcast_to(low[:, None, :], blocks.shape) & (ys > top - 3) & (ys <= top)] = SAND
    gravel = rng.random((size, size)) < 0.015
    blocks[np.broadcast_to(gravel[:, None, :], blocks.shape) & (ys == top)] = GRAVEL
    stone = blocks == STONE
    blocks[stone & (rng.random(blocks.shape) < 0.02)] = COAL_ORE
    blocks[:, 0, :] = BEDROCK

    spawn_x = spawn_z = size // 2
    trees: list[tuple[int, int, int]] = []
    for _ in range(n_trees * 20):
        if len(trees) >= n_trees:
            break
        x, z = (int(v) for v in rng.integers(0, size, size=2))
        if blocks[x, heightmap[x, z], z] != GRASS:
            continue
        if _wrapped_distance(x, spawn_x, size) <= 3 and _wrapped_distance(z, spawn_z, size) <= 3:
            continue
        if any(_wrapped_distance(x, tx, size) < 4 and _wrapped_distance(z, tz, size) < 4 for tx, _, tz in trees):
            continue
        y0 = int(heightmap[x, z]) + 1
        _place_tree(blocks, rng, x, y0, z, birch=rng.random() < 0.3)
        trees.append((x, y0, z))

    spawn = (spawn_x + 0.5, float(heightmap[spawn_x, spawn_z] + 1), spawn_z + 0.5)
    return World(blocks, heightmap, spawn, float(rng.uniform(-180.0, 180.0)), trees)


def _wrapped_distance(a: int, b: int, size: int) -> int:
    d = abs(a - b) % size
    return min(d, size - d)
