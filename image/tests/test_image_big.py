"""A source image larger than a test can afford to decode at once: a
40000 x 40000 RGB tiled BigTIFF (4.8 GB of pixels) that `vips replicate`
writes straight from a 200 x 200 pattern into 256 x 256 deflate tiles, scanned through its patch matrix under small budgets
on each lazy backend pair. The checksum of the matrix is compared with the
one computed from the tile alone (the image is periodic), and the peak RSS
the kernel reports (VmHWM) must stay below both budgets plus the stated
libvips bound.
"""
import os
import subprocess

import numpy as np
import pytest

DUMP = os.environ.get("PM_IMAGE_DUMP")
pytestmark = pytest.mark.skipif(not DUMP, reason="PM_IMAGE_DUMP not set")

SIDE = 40000
TILE = 256                  # of the file
PERIOD = 200                # of the pattern: 200 copies across and down
WIN = 4
STEP = (WIN * 40, 1)        # every 160th row of windows: 250 rows x 39997 windows
MiB = 1 << 20
IBUDGET = 32 * MiB
MBUDGET = 32 * MiB
# libvips' share: its tile cache keeps about 2.5 rows of 256 x 256 tiles
# across the 40000-pixel width (2.5 * 157 * 192 KiB = 74 MiB), plus one band
# of rows per filler thread in its buffers (4 MiB chunks: 35 rows of 120000
# bytes, 2 threads), its operation cache (32 MiB at most, set by the
# library) and the code and heap of libvips and its loaders (about 40 MiB
# measured after an open): 160 MiB in all, and 32 MiB more for the
# allocator's arenas of the decoding threads (a quiet run peaked at
# 227 MiB, 3 MiB over the first estimate).
VIPS_BOUND = 192 * MiB


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(42)
    tile = rng.integers(0, 256, size=(PERIOD, PERIOD, 3), dtype=np.uint8)
    raw = tmp / "tile.raw"
    tile.tofile(raw)
    run = lambda *a: subprocess.run(["vips", *map(str, a)], check=True, capture_output=True)
    run("rawload", raw, tmp / "tile.v", PERIOD, PERIOD, 3)
    path = tmp / "big.tif"
    n = SIDE // PERIOD
    run("replicate", tmp / "tile.v",
        "%s[tile,tile-width=%d,tile-height=%d,compression=deflate,predictor=none,bigtiff]"
        % (path, TILE, TILE), n, n)
    yield path, tile
    path.unlink()


def expected_checksum(tile):
    """The driver's checksum, from the tile: matrix bytes as little-endian
    uint64 words w_i, summed as w_i * ((i mod 1024) + 1) modulo 2^64."""
    oy = (SIDE - WIN) // STEP[0] + 1
    ox = SIDE - WIN + 1
    ys = np.arange(oy) * STEP[0]
    total = 0
    row_bytes = ox * WIN * WIN * 3
    assert row_bytes % 8 == 0
    for r, y in enumerate(ys):
        rows = np.stack([tile[(y + dy) % PERIOD] for dy in range(WIN)])   # (WIN, PERIOD, 3)
        xs = np.arange(ox)
        cols = (xs[:, None] + np.arange(WIN)[None, :]) % PERIOD              # (ox, WIN)
        # window (dy, dx, c) order per row of the matrix
        m = rows[:, cols, :].transpose(1, 0, 2, 3).reshape(-1)             # bytes of this band
        w = m.view("<u8").astype(np.uint64)
        base = r * row_bytes // 8
        weights = ((base + np.arange(w.size, dtype=np.uint64)) % 1024 + 1).astype(np.uint64)
        total = (total + int((w * weights).sum(dtype=np.uint64))) % (1 << 64)
    return total


@pytest.mark.parametrize("ib,mb", [("uffd", "uffd"), ("sigsegv", "sigsegv"), ("uffd", "none")])
def test_big_tiff_scanned_in_bounded_memory(big, ib, mb):
    path, tile = big
    r = subprocess.run([DUMP, "scan", str(path), "window=%dx%d" % (WIN, WIN),
                        "step=%dx%d" % STEP, "ibackend=" + ib, "ibudget=%d" % IBUDGET,
                        "ithreads=2", "mbackend=" + mb, "mbudget=%d" % MBUDGET, "mthreads=2"],
                       capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stderr
    got = dict(line.split("=", 1) for line in r.stdout.splitlines())
    print(ib, mb, got)
    assert int(got["checksum"]) == expected_checksum(tile)
    hwm = int(got["hwm_kib"]) * 1024
    bound = IBUDGET + (MBUDGET if mb != "none" else 0) + VIPS_BOUND
    assert hwm < bound, "peak RSS %d MiB, bound %d MiB" % (hwm >> 20, bound >> 20)
