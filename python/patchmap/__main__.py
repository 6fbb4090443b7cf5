"""python -m patchmap: the small form of `patchmap demo`, through the Python
package alone (a wheel has no `patchmap` tool).

A bank of 16 filters of 16 x 16 over every window of a synthetic 640 x 640
uint8 image, by matrix products on the lazily filled float32 patch matrix,
checked exactly against sums computed from the image alone, and on a sample
of windows against a direct convolution. The filters have small integer taps
and the image is uint8, so every response is an integer well below 2**24 and
float32 products compute it exactly in any summation order.

    python -m patchmap [--size N] [--budget SIZE] [--backend NAME]
    python -m patchmap doctor      # the report of `patchmap doctor`

Exit status 0 when every check holds, 1 when one fails, 2 on bad arguments.
"""

import argparse
import sys
import time
from typing import List, Optional

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

import patchmap


def _expected_sums(img: np.ndarray, k: int, filters: np.ndarray) -> np.ndarray:
    """Per filter, the sum of its responses over every window, from the image:
    sum_k F[f, k] * T[k], T[k] the image summed over the rectangle that window
    offset k sweeps (exact 64-bit integers from an integral image)."""
    h, w = img.shape
    oh, ow = h - k + 1, w - k + 1
    s = np.zeros((h + 1, w + 1), dtype=np.int64)
    s[1:, 1:] = img.astype(np.int64).cumsum(0).cumsum(1)
    dy, dx = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    t = (s[dy + oh, dx + ow] - s[dy, dx + ow] - s[dy + oh, dx] + s[dy, dx]).reshape(-1)
    return filters.astype(np.int64) @ t


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the demo (or, with the argument `doctor`, prints
    patchmap.doctor()'s report); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["doctor"]:
        if len(argv) > 1:
            print("usage: python -m patchmap doctor", file=sys.stderr)
            return 2
        print(patchmap.doctor(), end="")
        return 0
    ap = argparse.ArgumentParser(prog="python -m patchmap", description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=640, help="image side (default 640)")
    ap.add_argument("--budget", default="64M", help="resident bytes of the matrix (default 64M)")
    ap.add_argument("--backend", default="auto", help="auto, uffd, sigsegv or eager")
    a = ap.parse_args(argv)
    k, nf = 16, 16
    if a.size < k:
        ap.error("--size must be at least %d" % k)

    rng = np.random.default_rng(2024)
    img = rng.integers(0, 256, (a.size, a.size), dtype=np.uint8)
    filters = rng.integers(-2, 3, (nf, k * k)).astype(np.float32)
    try:
        m = patchmap.open(img, (k, k), budget=a.budget, backend=a.backend)
    except (patchmap.Error, ValueError, TypeError) as e:
        print("python -m patchmap: %s" % e, file=sys.stderr)
        return 2
    with m:
        X = m.array
        print("patchmap demo (Python, libpatchmap %s): %d filters of %dx%d over every %dx%d window "
              "of a synthetic %d x %d uint8 image" % (patchmap.library_version(), nf, k, k, k, k,
                                                      a.size, a.size))
        print("  matrix      %d rows x %d cols %s = %.1f MiB, filled lazily" % (
            X.shape[0], X.shape[1], X.dtype, X.nbytes / 2**20))
        t0 = time.perf_counter()
        resp = patchmap.blockwise(lambda b: b @ filters.T, X, block_bytes="16M")
        seconds = time.perf_counter() - t0
        st = m.stats()
        del X
    print("  backend     %s (%s)" % (st.backend, ", ".join(st.mechanisms) or "-"))
    print("  budget      %.0f MiB in chunks of %.0f KiB; peak %.1f MiB resident" % (
        st.budget_bytes / 2**20, st.chunk_bytes / 2**10, st.peak_resident_bytes / 2**20))
    print("  products    %d x %d responses in %.2f s" % (resp.shape[0], resp.shape[1], seconds))

    ok = True
    exact = np.abs(resp) <= 2**24
    if not (exact.all() and np.array_equal(resp, np.round(resp))):
        print("  responses   not all integers within the bound")
        ok = False
    got = resp.astype(np.int64).sum(axis=0)
    want = _expected_sums(img, k, filters)
    same = np.array_equal(got, want)
    ok &= same
    print("  sums        per-filter sums of the responses %s the exact sums from the image" % (
        "equal" if same else "DIFFER FROM"))
    view = sliding_window_view(img, (k, k)).reshape(-1, k * k)
    sample = np.sort(rng.choice(len(view), 4096, replace=False))
    direct = view[sample].astype(np.int64) @ filters.T.astype(np.int64)
    diff = int(np.abs(resp[sample].astype(np.int64) - direct).max())
    ok &= diff == 0
    print("  sample      %d windows by direct convolution: max |diff| %d" % (len(sample), diff))
    print("checksum ok" if ok else "CHECK FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
