#!/usr/bin/python3
"""bench-sklearn: a linear model's decision_function over EVERY sliding window
of an image whose patch matrix is larger than the machine's memory, through
patchmap's virtual array, under a small budget.

By default the image is sized so that its float32 16x16 patch matrix is 1.5x
MemTotal. Prints the time, the throughput over the matrix in GB/s, the peak
RSS of the measured section and its ratio to the matrix size, then the same
computation on a slice small enough to materialize with numpy (the copy the
user cannot afford at full size), as ratios measured in the same run.

    bench/bench-sklearn.py [--side N] [--window K] [--budget 256M] ...
    PATCHMAP_LIBRARY=build/libpatchmap.so bench/bench-sklearn.py --side 2048
"""

import argparse
import gc
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))

import numpy as np  # noqa: E402
import sklearn  # noqa: E402
from numpy.lib.stride_tricks import sliding_window_view  # noqa: E402
from sklearn.linear_model import LogisticRegression, RidgeClassifier  # noqa: E402

import patchmap  # noqa: E402

GIB = 1 << 30


def status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def meminfo_bytes(field):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return status_kib("VmRSS") * 1024


def peak():
    return status_kib("VmHWM") * 1024


def scene(side, seed=0):
    """A uint8 image of blobs in noise, and its blob mask (the labels)."""
    rng = np.random.default_rng(seed)
    yy = np.arange(side, dtype=np.float32)[:, None]
    xx = np.arange(side, dtype=np.float32)[None, :]
    mask = np.sin(yy / 37.0) * np.cos(xx / 23.0) > 0.2
    img = mask.astype(np.float32) * 60 + rng.normal(100, 25, (side, side)).astype(np.float32)
    return img.clip(0, 255).astype(np.uint8), mask


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--side", type=int, default=0,
                    help="image side (default: matrix = --ratio x MemTotal)")
    ap.add_argument("--ratio", type=float, default=1.5)
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--budget", default="256M")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="library filler threads")
    ap.add_argument("--model", choices=["ridge", "logreg"], default="ridge",
                    help="ridge keeps float32 coefficients; logreg (float64) needs "
                    "--dtype float64, else numpy casts the whole matrix")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--block-rows", type=int, default=0,
                    help="call decision_function on row blocks (views) of this many rows")
    ap.add_argument("--check-finite", action="store_true",
                    help="keep scikit-learn's finiteness check (one more pass over X)")
    ap.add_argument("--ref-gib", type=float, default=1.0,
                    help="size of the materialized reference slice")
    a = ap.parse_args()

    K = a.window
    dt = np.dtype(a.dtype)
    ram = meminfo_bytes("MemTotal")
    side = a.side or int(np.ceil(np.sqrt(a.ratio * ram / (K * K * dt.itemsize)))) + K - 1
    img, mask = scene(side)
    c = K // 2
    labels = mask[c:side - K + 1 + c, c:side - K + 1 + c].reshape(-1)

    X = patchmap.windows(img, K, dtype=dt, affine=(1 / 255, 0), budget=a.budget,
                         backend=a.backend, threads=a.threads)
    rows, cols = X.shape
    print("image %d x %d uint8 (%.0f MiB), %dx%d windows: X %d x %d %s = %.1f GiB "
          "(MemTotal %.1f GiB, budget %s)" % (side, side, img.nbytes / 2**20, K, K, rows, cols,
                                             dt, X.nbytes / GIB, ram / GIB, a.budget))

    rng = np.random.default_rng(1)
    idx = np.sort(rng.choice(rows, 20000, replace=False))
    model = RidgeClassifier() if a.model == "ridge" else LogisticRegression(max_iter=500)
    t = time.perf_counter()
    # take() computes the sampled rows only; X[idx] would be as right, but
    # would fill the 4 MiB chunk of every sampled row (here: all of X).
    sample = patchmap.take(X, idx)
    t_take = time.perf_counter() - t
    model.fit(sample, labels[idx])
    print("fit %s on 20000 sampled windows: take %.3f s, fit %.2f s; coef_ %s" % (
        type(model).__name__, t_take, time.perf_counter() - t - t_take, model.coef_.dtype))
    model.decision_function(X[:1000])  # warm up BLAS and sklearn

    def decide(Xb):
        return model.decision_function(Xb)

    gc.collect()
    with sklearn.config_context(assume_finite=not a.check_finite):
        rss0 = reset_peak()
        t = time.perf_counter()
        d = patchmap.blockwise(decide, X, a.block_rows) if a.block_rows else decide(X)
        secs = time.perf_counter() - t
        hwm = peak()
    st = patchmap.stats(X)
    acc = float(((d > 0) == labels).mean())
    print("decision_function over all %d windows: %.2f s, %.2f GB/s of matrix; accuracy %.4f"
          % (rows, secs, X.nbytes / secs / 1e9, acc))
    print("peak RSS %.0f MiB (%.0f MiB at start of section; output %.0f MiB): %.4f of the "
          "matrix" % (hwm / 2**20, rss0 / 2**20, d.nbytes / 2**20, hwm / X.nbytes))
    print("stats: backend %s [%s], chunk %d KiB, faults %d, evictions %d, read-ahead %d/%d, "
          "peak resident %.0f MiB, fill %.2f s (%.2f GB/s)" % (
              st.backend, ",".join(st.mechanisms), st.chunk_bytes >> 10, st.faults, st.evictions,
              st.readahead_hits, st.readahead_fills, st.peak_resident_bytes / 2**20,
              st.fill_seconds, st.bytes_filled / max(st.fill_seconds, 1e-9) / 1e9))

    # The same on a slice numpy can materialize: numpy's copy + decide, and
    # decide on the already materialized slice (the ceiling).
    per_line = side - K + 1  # windows per image row of positions
    ys = max(1, min(rows, int(a.ref_gib * GIB) // (cols * dt.itemsize)) // per_line)
    n = ys * per_line
    del d
    gc.collect()
    with sklearn.config_context(assume_finite=not a.check_finite):
        t = time.perf_counter()
        M = sliding_window_view(img[: ys + K - 1], (K, K)).reshape(-1, K * K).astype(dt)
        M *= dt.type(1 / 255)
        M += dt.type(0)
        t_mat = time.perf_counter() - t
        t = time.perf_counter()
        dm = decide(M)
        t_dec = time.perf_counter() - t
        t = time.perf_counter()
        dv = decide(X[:n])
        t_virt = time.perf_counter() - t
    same = np.array_equal(dm, dv)
    gb = M.nbytes / 1e9
    print("reference slice %d rows (%.2f GiB): numpy materialize %.2f GB/s + decide %.2f GB/s "
          "= %.2f GB/s; virtual %.2f GB/s; identical %s" % (
              n, M.nbytes / GIB, gb / t_mat, gb / t_dec, gb / (t_mat + t_dec), gb / t_virt, same))
    print("ratios: virtual / (materialize + decide) = %.2f; virtual / decide on resident = %.2f"
          % ((t_mat + t_dec) / t_virt, t_dec / t_virt))
    if not same:
        print("MISMATCH between the virtual and the materialized slice", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
