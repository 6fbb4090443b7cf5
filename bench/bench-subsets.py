"""Row selections and fold against scikit-learn (and torch's fold when it
imports). Each variant runs in its own process so that its peak RSS
(ru_maxrss) is its own. Usage: python3 bench/bench-subsets.py [SIZE]
(default 8192: the sample of an 8192 x 8192 image; the fold sizes scale
with it). PATCHMAP_LIBRARY selects the library, as for the package."""

import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))


def child(kind, n):
    import numpy as np
    import patchmap
    from sklearn.decomposition import PCA
    from sklearn.feature_extraction import image as ski

    rng = np.random.default_rng(0)
    img = rng.random((n, n), dtype=np.float32)
    t0 = time.perf_counter()
    if kind == "sample-sklearn":
        X = ski.extract_patches_2d(img, (8, 8), max_patches=0.01, random_state=0)
        PCA(8, random_state=0).fit(X.reshape(len(X), -1))
        mb = 0
    elif kind == "sample-patchmap":
        X = patchmap.extract_patches_2d(img, (8, 8), max_patches=0.01, random_state=0)
        PCA(8, random_state=0).fit(X)
        mb = 0
    elif kind == "fold-patchmap":
        X = patchmap.windows(img, (8, 8), budget="256M")
        out = patchmap.fold(X, img.shape, (8, 8), mode="mean", dtype=np.float32)
        mb = X.nbytes
    elif kind == "fold-sklearn":
        P = ski.extract_patches_2d(img, (8, 8))
        t0 = time.perf_counter()
        out = ski.reconstruct_from_patches_2d(P, img.shape)
        mb = P.nbytes
    elif kind == "fold-torch":
        import torch
        F = torch.nn.functional
        cols = F.unfold(torch.from_numpy(img)[None, None], (8, 8))
        t0 = time.perf_counter()
        out = F.fold(cols, img.shape, (8, 8))
        mb = cols.numel() * 4
    elif kind == "copy":
        a = np.ones(n * n * 16, np.float32)
        t0 = time.perf_counter()
        b = a.copy()
        mb = a.nbytes
    dt = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"kind": kind, "n": n, "s": dt, "bytes": mb, "rss": rss}))


def run(kind, n):
    r = subprocess.run([sys.executable, __file__, "--child", kind, str(n)], check=True,
                       capture_output=True, text=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(sys.argv[2], int(sys.argv[3]))
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 8192
    print("1 %% sample of the 8x8 windows of a %d x %d float32 image into PCA(8).fit" % (n, n))
    a, b = run("sample-sklearn", n), run("sample-patchmap", n)
    print("  sklearn extract_patches_2d: %6.2f s  peak RSS %6.0f MiB" % (a["s"], a["rss"] / 2**20))
    print("  patchmap.extract_patches_2d: %5.2f s  peak RSS %6.0f MiB  (%.1fx faster, %.1fx less memory)"
          % (b["s"], b["rss"] / 2**20, a["s"] / b["s"], a["rss"] / b["rss"]))
    m = max(n // 8, 256)
    print("fold (mean) of the 8x8 windows of a %d x %d float32 image" % (n // 2, n // 2))
    c = run("copy", n // 2)
    f = run("fold-patchmap", n // 2)
    print("  memcpy: %.2f GB/s" % (c["bytes"] / c["s"] / 1e9))
    print("  patchmap.fold of the lazy matrix (%.1f GB): %.2f GB/s of matrix, peak RSS %.0f MiB"
          % (f["bytes"] / 1e9, f["bytes"] / f["s"] / 1e9, f["rss"] / 2**20))
    print("fold of a %d x %d image (sizes scikit-learn and torch hold in memory)" % (m, m))
    p = run("fold-patchmap", m)
    s = run("fold-sklearn", m)
    print("  patchmap.fold:                 %.3f s (%.2f GB/s) peak RSS %.0f MiB"
          % (p["s"], p["bytes"] / p["s"] / 1e9, p["rss"] / 2**20))
    print("  reconstruct_from_patches_2d:   %.3f s (%.2f GB/s) peak RSS %.0f MiB"
          % (s["s"], s["bytes"] / s["s"] / 1e9, s["rss"] / 2**20))
    try:
        t = run("fold-torch", m)
        print("  torch fold:                    %.3f s (%.2f GB/s) peak RSS %.0f MiB"
              % (t["s"], t["bytes"] / t["s"] / 1e9, t["rss"] / 2**20))
    except subprocess.CalledProcessError:
        print("  torch fold: torch does not import here")


if __name__ == "__main__":
    main()
