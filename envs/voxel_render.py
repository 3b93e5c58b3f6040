"""First-person renderer for the embedded voxel world.

Rays are cast per pixel at a low internal resolution (default 72x128), shaded with small procedural 16x16
block textures, per-face brightness (Minecraft's 1.0 / 0.8 / 0.6 / 0.5 for top / z-sides / x-sides / bottom),
distance fog and a sky gradient, then upscaled to the observation size with nearest-neighbour sampling (blocky,
like the game) and overlaid with a crosshair and a hotbar.

Ray casting is an exact voxel traversal (Amanatides & Woo). Two interchangeable backends:

* ``"numba"`` (default when ``numba`` is installed): a compiled per-ray loop, a few ms per frame on one core.
* ``"numpy"``: vectorised traversal over all rays that skips empty space with distance fields; correct but
  several times slower. Both give the same image up to floating-point ties at block edges.
"""
from __future__ import annotations

import logging
import math
from typing import Optional

import cv2
import numpy as np

from .errors import EnvArgumentError
from .voxel_world import AIR, BLOCKS, World

logger = logging.getLogger(__name__)

try:  # optional accelerator
    import numba
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None

SKY_ZENITH = np.array([120, 165, 255], np.float32)
SKY_HORIZON = np.array([190, 213, 255], np.float32)
FACE_SHADE = np.array([0.6, 1.0, 0.5, 0.8], np.float32)  # x-side, top, bottom, z-side
FACE_X, FACE_TOP, FACE_BOTTOM, FACE_Z = range(4)
NO_HIT = -1
MAX_STEPS = 4096  # safety cap on traversal steps per ray (a normal ray needs < 100)


def available_backends() -> tuple[str, ...]:
    """Ray-casting backends usable in this Python environment."""
    return ("numba", "numpy") if numba is not None else ("numpy",)


# --------------------------------------------------------------------------------------------------------------
# Ray traversal
# --------------------------------------------------------------------------------------------------------------
def _traverse_scalar(blocks, layer, top, origin, dirs, max_dist, out_block, out_t, out_face):  # pragma: no cover
    """Per-ray voxel traversal (compiled by numba). Writes block id, distance and face code per ray.

    ``top``: no solid block at ``y >= top``, so rays going up from there see sky. ``layer[x, y, z] = r`` says the
    ``(2r+1)^2`` square around the voxel in its own y-layer is all air: near-horizontal rays jump across it.
    """
    size = blocks.shape[0]
    height = blocks.shape[1]
    mask = size - 1
    ox, oy, oz = origin[0], origin[1], origin[2]
    inf = 1e30
    for i in range(dirs.shape[0]):
        dx, dy, dz = dirs[i, 0], dirs[i, 1], dirs[i, 2]
        grazing = 4.0 * dy * dy < dx * dx + dz * dz  # |dy| < 0.5 * horizontal length
        ix, iy, iz = int(np.floor(ox)), int(np.floor(oy)), int(np.floor(oz))
        sx = 1 if dx > 0 else -1
        sy = 1 if dy > 0 else -1
        sz = 1 if dz > 0 else -1
        tdx = abs(1.0 / dx) if dx != 0 else inf
        tdy = abs(1.0 / dy) if dy != 0 else inf
        tdz = abs(1.0 / dz) if dz != 0 else inf
        tx = ((ix + (sx > 0) - ox) / dx) if dx != 0 else inf
        ty = ((iy + (sy > 0) - oy) / dy) if dy != 0 else inf
        tz = ((iz + (sz > 0) - oz) / dz) if dz != 0 else inf
        out_block[i] = 0
        out_t[i] = inf
        out_face[i] = -1
        for _ in range(MAX_STEPS):
            if tx < ty and tx < tz:
                t = tx
                ix += sx
                tx += tdx
                face = 0
            elif ty < tz:
                t = ty
                iy += sy
                ty += tdy
                face = 1 if sy < 0 else 2
            else:
                t = tz
                iz += sz
                tz += tdz
                face = 3
            if t > max_dist or iy >= height or iy < 0 or (iy >= top and sy > 0):
                break
            b = blocks[ix & mask, iy, iz & mask]
            if b != 0:
                out_block[i] = b
                out_t[i] = t
                out_face[i] = face
                break
            if not grazing:
                continue
            r = layer[ix & mask, iy, iz & mask]
            if r >= 2:
                # jump to the last voxel of the empty square along the ray, then resume the traversal there
                ex = ((ix + r + 1 - ox) / dx if dx > 0 else (ix - r - ox) / dx) if dx != 0 else inf
                ey = ((iy + 1 - oy) / dy if dy > 0 else (iy - oy) / dy) if dy != 0 else inf
                ez = ((iz + r + 1 - oz) / dz if dz > 0 else (iz - r - oz) / dz) if dz != 0 else inf
                te = min(ex, ey, ez)
                if te <= min(tx, ty, tz) + 1e-9:
                    continue  # the square ends where this voxel does: nothing to skip
                jx = min(max(int(np.floor(ox + te * dx)), ix - r), ix + r)
                jz = min(max(int(np.floor(oz + te * dz)), iz - r), iz + r)
                # never step back (ties at voxel corners): the traversal must only move forward
                ix = max(jx, ix) if sx > 0 else min(jx, ix)
                iz = max(jz, iz) if sz > 0 else min(jz, iz)
                tx = ((ix + (sx > 0) - ox) / dx) if dx != 0 else inf
                tz = ((iz + (sz > 0) - oz) / dz) if dz != 0 else inf


def _shade_scalar(block, dist, face, dirs, ray_length, eye, textures, face_shade, sky_horizon, sky_zenith,
                  view_distance, out):  # pragma: no cover - jitted
    """Per-ray shading (compiled by numba); the same formulas as :meth:`VoxelRenderer._shade_numpy`."""
    for i in range(block.shape[0]):
        elevation = min(max(dirs[i, 1] / ray_length[i], 0.0), 1.0) ** 0.5
        b = block[i]
        if b == 0:
            for c in range(3):
                out[i, c] = int(sky_horizon[c] + (sky_zenith[c] - sky_horizon[c]) * elevation)
            continue
        t = dist[i]
        f = face[i]
        fx = eye[0] + dirs[i, 0] * t
        fy = eye[1] + dirs[i, 1] * t
        fz = eye[2] + dirs[i, 2] * t
        fx -= np.floor(fx)
        fy -= np.floor(fy)
        fz -= np.floor(fz)
        side = f == 0 or f == 3
        u = fz if f == 0 else fx
        v = 1.0 - fy if side else fz
        tu = min(int(u * 16), 15)
        tv = min(int(v * 16), 15)
        tex_face = 1 if side else (0 if f == 1 else 2)
        index = ((b * 3 + tex_face) * 16 + tv) * 16 + tu
        fog = min(max((t * ray_length[i] - 0.6 * view_distance) / (0.4 * view_distance), 0.0), 1.0)
        for c in range(3):
            sky = sky_horizon[c] + (sky_zenith[c] - sky_horizon[c]) * elevation
            colour = textures[index, c] * face_shade[f]
            out[i, c] = int(colour + (sky - colour) * fog)


_traverse_numba = _shade_numba = None
if numba is not None:
    _traverse_numba = numba.njit(cache=True, nogil=True)(_traverse_scalar)
    _shade_numba = numba.njit(cache=True, nogil=True)(_shade_scalar)


def _chebyshev_field(solid: np.ndarray, radius: int, vertical: bool) -> np.ndarray:
    """Per-voxel ``r`` such that the box of half-size ``r`` (in x/z; also y if ``vertical``) is all air.

    Computed by repeated dilation with wrap-around in x/z. ``-1`` marks solid voxels.
    """
    field = np.full(solid.shape, radius, np.int32)
    covered = solid.copy()
    field[covered] = -1
    for r in range(radius):
        grown = covered | np.roll(covered, 1, 0) | np.roll(covered, -1, 0)
        grown = grown | np.roll(grown, 1, 2) | np.roll(grown, -1, 2)
        if vertical:
            up_down = grown.copy()
            up_down[:, 1:] |= grown[:, :-1]
            up_down[:, :-1] |= grown[:, 1:]
            grown = up_down
        field[grown & ~covered] = r
        covered = grown
    return field


class _NumpyTraversal:
    """Vectorised traversal of all rays at once, jumping across empty boxes known from distance fields.

    Fields are computed once per world; breaking blocks only adds air, so stale fields stay conservative.
    """

    def __init__(self, blocks: np.ndarray, layer: np.ndarray):
        self.cube = _chebyshev_field(blocks != AIR, 6, vertical=True).ravel()
        self.layer = layer.ravel().astype(np.int64)

    def __call__(self, blocks, layer, top, origin, dirs, max_dist, out_block, out_t, out_face):
        size, height, _ = blocks.shape
        flat = blocks.ravel()
        o = origin.astype(np.float64)
        n = len(dirs)
        out_block[:] = 0
        out_t[:] = np.inf
        out_face[:] = NO_HIT
        with np.errstate(divide="ignore"):
            inv = 1.0 / np.where(dirs == 0, 1e-30, dirs)
        pos = dirs > 0
        grazing = np.abs(dirs[:, 1]) < 0.5 * np.hypot(dirs[:, 0], dirs[:, 2])
        upward = dirs[:, 1] >= 0
        ray = np.arange(n)
        voxel = np.broadcast_to(np.floor(o).astype(np.int64), (n, 3)).copy()
        axis = np.zeros(n, np.int64)
        t = np.zeros(n)
        d, inv_g, pos_g, graze_g, up_g = dirs, inv, pos, grazing, upward
        mask = size - 1
        for _ in range(MAX_STEPS):
            if not len(ray):
                break
            vy = voxel[:, 1]
            outside = (vy >= height) | (vy < 0) | ((vy >= top) & up_g) | (t > max_dist)
            cell = ((voxel[:, 0] & mask) * height + np.clip(vy, 0, height - 1)) * size + (voxel[:, 2] & mask)
            block = np.where(outside, 0, flat[cell])
            hit = block != 0
            if hit.any():
                idx = ray[hit]
                out_block[idx] = block[hit]
                out_t[idx] = t[hit]
                face = np.where(axis[hit] == 0, FACE_X, np.where(axis[hit] == 2, FACE_Z, 0))
                face = np.where(axis[hit] == 1, np.where(d[hit, 1] < 0, FACE_TOP, FACE_BOTTOM), face)
                out_face[idx] = face
            keep = ~(hit | outside)
            if not keep.all():
                ray, voxel, t, cell = ray[keep], voxel[keep], t[keep], cell[keep]
                d, inv_g, pos_g, graze_g, up_g = d[keep], inv_g[keep], pos_g[keep], graze_g[keep], up_g[keep]
                if not len(ray):
                    break
            # broken blocks leave -1 (solid) in the stale fields: treat as "no skip"
            r_cube = np.maximum(self.cube[cell], 0)
            r_flat = np.where(graze_g, np.maximum(self.layer[cell], r_cube), r_cube)
            radius = np.stack([r_flat, np.where(graze_g, 0, r_cube), r_flat], axis=1)
            lo, hi = voxel - radius, voxel + radius + 1
            exit_t = (np.where(pos_g, hi, lo) - o) * inv_g
            axis = np.argmin(exit_t, axis=1)
            rows = np.arange(len(ray))
            t = exit_t[rows, axis]
            nxt = np.clip(np.floor(o + t[:, None] * d).astype(np.int64), lo, hi - 1)
            nxt[rows, axis] = np.where(pos_g[rows, axis], hi[rows, axis], lo[rows, axis] - 1)
            voxel = nxt


# --------------------------------------------------------------------------------------------------------------
# Textures and overlay
# --------------------------------------------------------------------------------------------------------------
def _make_textures(seed: int = 1234) -> np.ndarray:
    """Procedural 16x16 textures, shape ``(n_blocks, 3 [top, side, bottom], 16, 16, 3)`` float32 in [0, 255]."""
    rng = np.random.default_rng(seed)
    atlas = np.zeros((len(BLOCKS), 3, 16, 16, 3), np.float32)
    v = np.arange(16)[:, None] * np.ones((1, 16))
    u = np.ones((16, 1)) * np.arange(16)[None, :]
    for bid, block in enumerate(BLOCKS):
        for face, base in enumerate((block.top, block.side, block.bottom)):
            noise = 1.0 + rng.uniform(-0.12, 0.12, (16, 16))
            tex = np.asarray(base, np.float32)[None, None, :] * noise[..., None]
            name = block.name
            if name.endswith("_log") and face == 1:  # bark: vertical streaks
                stripes = 1.0 + 0.18 * np.sin(u * 2.1 + rng.uniform(0, 6)) * rng.uniform(0.6, 1.0, (1, 16))
                tex *= stripes[..., None]
                if name == "birch_log":  # dark birch marks
                    marks = (rng.random((16, 16)) < 0.12) & (rng.random((1, 16)) < 0.6)
                    tex[marks] = (40, 40, 35)
            elif name.endswith("_log"):  # rings on cut faces
                ring = np.hypot(u - 7.5, v - 7.5)
                tex *= (1.0 - 0.15 * (np.floor(ring) % 2 == 0))[..., None]
                tex[ring > 6.5] = np.asarray(block.side, np.float32) * 0.9
            elif name.endswith("_leaves"):
                holes = rng.random((16, 16)) < 0.25
                tex[holes] *= 0.55
            elif name == "grass_block" and face == 1:  # grass fringe over dirt
                fringe = v < 3 + (rng.random((1, 16)) < 0.4)
                tex[fringe] = np.asarray(block.top, np.float32) * rng.uniform(0.85, 1.1, (16, 16, 1))[fringe]
            elif name == "coal_ore":
                spots = rng.random((16, 16)) < 0.1
                tex[spots] = (30, 30, 30)
            atlas[bid, face] = tex
    return np.clip(atlas, 0, 255)


def _hotbar_sprites(width: int, scale: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Nine hotbar images (one per selected slot), their alpha, and the top-left corner's column offset."""
    slot, w, h = 20 * scale, 182 * scale, 22 * scale
    base = np.zeros((h, w, 3), np.float32)
    alpha = np.zeros((h, w), np.float32)
    alpha[scale:-scale, scale:-scale] = 0.55
    base[:, :] = (60, 60, 60)
    for i in range(10):  # slot separators and frame
        x = scale + i * slot
        base[:, x:x + scale] = (150, 150, 150)
        alpha[:, x:x + scale] = 0.9
    base[:scale], base[-scale:] = (150, 150, 150), (150, 150, 150)
    alpha[:scale], alpha[-scale:] = 0.9, 0.9
    sprites, alphas = [], []
    for sel in range(9):
        img, a = base.copy(), alpha.copy()
        x0 = sel * slot
        for rect in ((slice(0, 2 * scale), slice(x0, x0 + slot + 2 * scale)),
                     (slice(h - 2 * scale, h), slice(x0, x0 + slot + 2 * scale)),
                     (slice(0, h), slice(x0, x0 + 2 * scale)),
                     (slice(0, h), slice(x0 + slot, x0 + slot + 2 * scale))):
            img[rect] = (235, 235, 235)
            a[rect] = 1.0
        sprites.append(img)
        alphas.append(a[..., None])
    return np.stack(sprites), np.stack(alphas), ((width - w) // 2, h)


class VoxelRenderer:
    """Renders ``(height, width, 3)`` uint8 RGB first-person frames of a :class:`World`.

    Args:
        height, width: output frame size (MineRL/VPT: 360x640).
        internal: ``(rows, cols)`` at which rays are cast before nearest-neighbour upscaling.
        fov: vertical field of view in degrees (Minecraft's FOV setting; VPT uses 70).
        view_distance: blocks beyond which everything is fog/sky.
        backend: ``"numba"``, ``"numpy"`` or ``None`` for the fastest available.
        overlay: draw the crosshair and hotbar (as Minecraft's GUI at GUI scale 1 does).
    """

    def __init__(self, height: int = 360, width: int = 640, internal: tuple[int, int] = (72, 128),
                 fov: float = 70.0, view_distance: float = 40.0, backend: Optional[str] = None,
                 overlay: bool = True):
        if backend is None:
            backend = available_backends()[0]
        if backend not in available_backends():
            raise EnvArgumentError(f"backend must be one of {available_backends()}, got {backend!r}")
        if not (0 < fov < 180):
            raise EnvArgumentError(f"fov must be in (0, 180) degrees, got {fov}")
        self.height, self.width = height, width
        self.rows, self.cols = internal
        self.backend = backend
        self.view_distance = float(view_distance)
        self.overlay = overlay
        tan_y = np.tan(np.radians(fov) / 2)
        tan_x = tan_y * width / height
        u = ((np.arange(self.cols) + 0.5) / self.cols * 2 - 1) * tan_x
        v = (1 - (np.arange(self.rows) + 0.5) / self.rows * 2) * tan_y
        uu, vv = np.meshgrid(u, v)
        self._cam = np.stack([uu.ravel(), vv.ravel(), np.ones(uu.size)], axis=1)  # right, up, forward
        self._ray_length = np.sqrt((self._cam ** 2).sum(axis=1)).astype(np.float32)  # rotation-invariant
        self._textures = _make_textures().reshape(-1, 3)
        self._hotbar, self._hotbar_alpha, (self._hotbar_x, hotbar_h) = _hotbar_sprites(width, max(1, height // 360))
        self._hotbar_y = height - hotbar_h
        n = self.rows * self.cols
        self._block = np.zeros(n, np.uint8)
        self._t = np.zeros(n, np.float64)
        self._face = np.zeros(n, np.int8)
        self._small = np.zeros((n, 3), np.uint8)
        self._accel_for: Optional[np.ndarray] = None  # the blocks array the cached fields below belong to
        self._layer: Optional[np.ndarray] = None
        self._numpy_traversal: Optional[_NumpyTraversal] = None

    def ray_directions(self, yaw: float, pitch: float) -> np.ndarray:
        """World-space unit-free ray directions ``(rows*cols, 3)`` for a Minecraft yaw/pitch in degrees.

        Minecraft convention: yaw 0 looks towards +z, yaw 90 towards -x; positive pitch looks down.
        """
        forward, right, up = camera_basis(yaw, pitch)
        return self._cam @ np.stack([right, up, forward])

    def cast(self, world: World, eye: np.ndarray, yaw: float, pitch: float) -> tuple[np.ndarray, ...]:
        """Cast all rays; returns ``(block_id, distance, face, directions)`` per ray (flat arrays)."""
        dirs = self.ray_directions(yaw, pitch)
        eye = np.asarray(eye, np.float64)
        if self._accel_for is not world.blocks:
            # Empty-space fields, computed once per world. Blocks are only ever removed (air added), so the
            # fields stay conservative (never claim air where there is a block) for the rest of the episode.
            self._accel_for = world.blocks
            self._layer = _chebyshev_field(world.blocks != AIR, 16, vertical=False).astype(np.int8)
            self._numpy_traversal = _NumpyTraversal(world.blocks, self._layer) if self.backend == "numpy" else None
        args = (world.blocks, self._layer, world.top, eye, dirs, self.view_distance,
                self._block, self._t, self._face)
        if self.backend == "numba":
            _traverse_numba(*args)
        else:
            self._numpy_traversal(*args)
        return self._block, self._t, self._face, dirs

    def render(self, world: World, eye: np.ndarray, yaw: float, pitch: float, hotbar_slot: int = 0) -> np.ndarray:
        """Render one frame as a ``(height, width, 3)`` uint8 RGB array."""
        block, dist, face, dirs = self.cast(world, eye, yaw, pitch)
        eye = np.asarray(eye, np.float64)
        if self.backend == "numba":
            small = self._small
            _shade_numba(block, dist, face, dirs, self._ray_length, eye, self._textures, FACE_SHADE,
                         SKY_HORIZON, SKY_ZENITH, self.view_distance, small)
        else:
            small = self._shade_numpy(block, dist, face, dirs, eye)
        frame = cv2.resize(small.reshape(self.rows, self.cols, 3), (self.width, self.height),
                           interpolation=cv2.INTER_NEAREST)
        if self.overlay:
            self._draw_overlay(frame, hotbar_slot)
        return frame

    def _shade_numpy(self, block, dist, face, dirs, eye) -> np.ndarray:
        length = self._ray_length
        elevation = np.clip(dirs[:, 1].astype(np.float32) / length, 0.0, 1.0)[:, None]
        sky = SKY_HORIZON + (SKY_ZENITH - SKY_HORIZON) * np.sqrt(elevation)
        hit = block != AIR
        if not hit.any():
            return sky.astype(np.uint8)
        b, t, f, d = block[hit].astype(np.int64), dist[hit], face[hit], dirs[hit]
        point = eye + d * t[:, None]
        frac = point - np.floor(point)
        # texture coordinates: side faces use (horizontal, y); top/bottom use (x, z)
        side = (f == FACE_X) | (f == FACE_Z)
        u = np.where(f == FACE_X, frac[:, 2], frac[:, 0])
        v = np.where(side, 1.0 - frac[:, 1], frac[:, 2])
        tu = np.minimum((u * 16).astype(np.int64), 15)
        tv = np.minimum((v * 16).astype(np.int64), 15)
        tex_face = np.where(side, 1, np.where(f == FACE_TOP, 0, 2))
        colour = self._textures[((b * 3 + tex_face) * 16 + tv) * 16 + tu] * FACE_SHADE[f][:, None]
        # fog towards the sky colour over the last 40% of the view distance
        fog = np.clip((t * length[hit] - 0.6 * self.view_distance) / (0.4 * self.view_distance), 0.0, 1.0)[:, None]
        sky[hit] = colour + (sky[hit] - colour) * fog
        return sky.astype(np.uint8)

    def _draw_overlay(self, frame: np.ndarray, slot: int) -> None:
        cy, cx = self.height // 2, self.width // 2
        frame[cy - 1:cy + 1, cx - 5:cx + 5] = 230
        frame[cy - 5:cy + 5, cx - 1:cx + 1] = 230
        h, w = self._hotbar.shape[1:3]
        region = frame[self._hotbar_y:self._hotbar_y + h, self._hotbar_x:self._hotbar_x + w]
        alpha = self._hotbar_alpha[slot]
        region[:] = (region * (1 - alpha) + self._hotbar[slot] * alpha).astype(np.uint8)


def camera_basis(yaw: float, pitch: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(forward, right, up)`` unit vectors for Minecraft yaw/pitch (degrees)."""
    y, p = math.radians(yaw), math.radians(pitch)
    sy, cy, sp, cp = math.sin(y), math.cos(y), math.sin(p), math.cos(p)
    forward = np.array([-sy * cp, -sp, cy * cp])
    right = np.array([-cy, 0.0, -sy])
    up = np.array([-sy * sp, cp, cy * sp])  # right x forward
    return forward, right, up
