"""Row selections and fold against scikit-learn (and torch's fold when it
imports). Each variant runs in its own process so that its peak RSS (the
kernel's VmHWM of that process: ru_maxrss would also count the RSS of the
process it was forked from) is its own. Usage: python3 bench/bench-subsets.py [SIZE] [FOLD]
[LAZY] (default 8192 1024 8192: the 1 % sample of the 8 x 8 windows of a
SIZE x SIZE float32 image loaded from a .npy file, read once and into an
IncrementalPCA fit, against scikit-learn's extract_patches_2d, with the
peak RSS above what the process held before the sampling; the fold of the 8 x 8
windows of a FOLD x FOLD image against scikit-learn and torch, whose
matrices are in memory; the fold of the lazy 12 x 12 matrix of a LAZY x LAZY
image, 38 GB at 8192). PATCHMAP_LIBRARY selects the library, as for the
package; PATCHMAP_BENCH_DIR the directory of the image file (default: the
system's temporary directory)."""

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))

BLOCK = 1 << 20  # bytes of the matrix read at a time


def image(n):
    import numpy as np
    return np.random.default_rng(0).random((n, n), dtype=np.float32)


def copy_rate(nbytes):
    """memcpy of nbytes into memory already written once: the best of 5."""
    import numpy as np
    a = np.ones(nbytes // 4, np.float32)
    b = np.zeros_like(a)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t0)
    return nbytes / best


def digest(X):
    import numpy as np
    h = hashlib.sha256()
    rows = max(1, BLOCK // (X.shape[1] * X.itemsize))
    for a in range(0, X.shape[0], rows):
        h.update(memoryview(np.ascontiguousarray(X[a:a + rows])).cast("B"))
    return h.hexdigest()


def vm_hwm():
    """This process's peak RSS in bytes, from the kernel."""
    with open("/proc/self/status") as st:
        return next(int(line.split()[1]) * 1024 for line in st if line.startswith("VmHWM:"))


def child(kind, n, path):
    import numpy as np
    import patchmap
    from sklearn.feature_extraction import image as ski

    out = {}
    if kind.startswith("sample-"):
        img = np.load(path)
        base = vm_hwm()  # the interpreter, the imports and the image
        t0 = time.perf_counter()
        if kind.startswith("sample-sklearn"):
            X = ski.extract_patches_2d(img, (8, 8), max_patches=0.01, random_state=0)
            X = X.reshape(len(X), -1)
        elif "-blocks" in kind:
            # computed block by block by patchmap.blocks: the mapping is
            # never touched, so the budget plays no part
            X = patchmap.extract_patches_2d(img, (8, 8), max_patches=0.01, random_state=0)
        else:
            # streamed under a small budget: 2 MiB chunks, at most 8 MiB of
            # them resident, two filler threads
            X = patchmap.extract_patches_2d(img, (8, 8), max_patches=0.01, random_state=0,
                                            budget="8M", chunk="2M", threads=2)
        rows = BLOCK // (X.shape[1] * 4)
        if not kind.endswith("-fit"):
            if "-blocks" in kind:
                # every block in ordinary memory, as the consumer gets it;
                # their bytes are checked in a second pass, not timed
                for blk in patchmap.blocks(X, block_rows=rows):
                    pass
                dt = time.perf_counter() - t0
                h = hashlib.sha256()
                for blk in patchmap.blocks(X, block_rows=rows):
                    h.update(memoryview(blk).cast("B"))
                out["sha256"] = h.hexdigest()
            else:
                if kind.startswith("sample-patchmap"):
                    # read once, block by block, as a consumer streams it
                    buf = np.empty(BLOCK // 4, np.float32)
                    for a in range(0, X.shape[0], rows):
                        blk = X[a:a + rows]
                        np.copyto(buf[:blk.size].reshape(blk.shape), blk)
                dt = time.perf_counter() - t0
                out["sha256"] = digest(X)
        else:
            # IncrementalPCA: scikit-learn's fit takes the sample whole (and
            # copies it, copy=True); the lazy sample goes to partial_fit in
            # the same batches, so the two fits are the same computation
            from sklearn.decomposition import IncrementalPCA
            from sklearn.utils import gen_batches
            pca = IncrementalPCA(8, batch_size=4096)
            if kind.startswith("sample-sklearn"):
                pca.fit(X)
            elif "-blocks" in kind:
                assert X.shape[0] % 4096 >= 8  # fit would not merge the last batch
                for b in patchmap.blocks(X, block_rows=4096):
                    pca.partial_fit(b)
            else:
                for b in gen_batches(X.shape[0], 4096, min_batch_size=8):
                    pca.partial_fit(X[b])
            dt = time.perf_counter() - t0
            out["sha256"] = hashlib.sha256(pca.components_.tobytes()).hexdigest()
        mb = X.nbytes
        out["above"] = vm_hwm() - base
    elif kind == "fold-dtypes":
        # the float32 matrix of the 8x8 windows, converted: the sum into
        # float32 and float64, 1 and 2 threads, best of 3 each
        img = image(n)
        X0 = np.array(patchmap.windows(img, (8, 8)))
        rates = {}
        for dt in ("float32", "float64", "uint8", "int16"):
            X = (X0 * 100).astype(dt)
            for odt in ("float32", "float64"):
                for th in (1, 2):
                    f = lambda: patchmap.fold(X, img.shape, (8, 8), dtype=odt, threads=th)
                    f()
                    best = float("inf")
                    for _ in range(3):
                        t0 = time.perf_counter()
                        f()
                        best = min(best, time.perf_counter() - t0)
                    rates["%s %s %d" % (dt, odt, th)] = [X.nbytes / best, X.size / best]
        out["rates"] = rates
        mb, dt = 0, 1.0
    elif kind == "baseline":  # the interpreter and the imports alone
        mb, dt = 0, 1.0
    elif kind == "save":
        np.save(path, image(n))
        mb, dt = 0, 1.0
    elif kind == "copy":
        mb = n
        out["rate"] = copy_rate(n)
        dt = mb / out["rate"]
    elif kind.startswith("fold-lazy"):
        img = image(n)
        X = patchmap.windows(img, (12, 12), budget="256M")
        t0 = time.perf_counter()
        if kind == "fold-lazy":  # the whole matrix: read by the fold's threads
            patchmap.fold(X, img.shape, (12, 12), mode="mean", dtype=np.float32)
            mb = X.nbytes
        else:  # all rows but the first, a slice: through the mapping's faults
            patchmap.fold(X[1:], img.shape, (12, 12), mode="mean", dtype=np.float32,
                          row_range=(1, X.shape[0]))
            mb = X[1:].nbytes
        dt = time.perf_counter() - t0
        out["stats"] = {k: v for k, v in patchmap.stats(X).asdict().items()
                        if k in ("backend", "threads", "budget_bytes", "peak_resident_bytes")}
    else:
        img = image(n)
        P = ski.extract_patches_2d(img, (8, 8))
        X = P.reshape(len(P), -1)
        mb = X.nbytes
        if kind == "fold-sklearn":
            t0 = time.perf_counter()
            got = ski.reconstruct_from_patches_2d(P, img.shape)
            dt = time.perf_counter() - t0
            out["sha256"] = hashlib.sha256(got.tobytes()).hexdigest()
        elif kind == "fold-torch":
            import torch
            F = torch.nn.functional
            cols = torch.from_numpy(np.ascontiguousarray(X.T))[None]
            del P, X
            F.fold(cols, img.shape, (8, 8))  # once, so that its output is not fresh
            t0 = time.perf_counter()
            got = F.fold(cols, img.shape, (8, 8))
            dt = time.perf_counter() - t0
            out["sha256"] = hashlib.sha256(got[0, 0].numpy().tobytes()).hexdigest()
        else:  # fold-patchmap-MODE-THREADS
            _, _, mode, threads = kind.split("-")
            dtype = np.float64 if mode == "mean" else np.float32
            f = lambda: patchmap.fold(X, img.shape, (8, 8), mode=mode, dtype=dtype,
                                      threads=int(threads))
            want = f()  # once, so that the output's pages are not fresh
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                got = f()
                best = min(best, time.perf_counter() - t0)
            dt = best
            assert got.tobytes() == want.tobytes()
            out["sha256"] = hashlib.sha256(got.tobytes()).hexdigest()
    out.update({"kind": kind, "n": n, "s": dt, "bytes": mb, "rss": vm_hwm()})
    print(json.dumps(out))


def run(kind, n, path=""):
    r = subprocess.run([sys.executable, __file__, "--child", kind, str(n), path], check=True,
                       capture_output=True, text=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


ROUNDS = 3


def median(xs):
    return sorted(xs)[len(xs) // 2]


def gbs(r):
    return r["bytes"] / r["s"] / 1e9


def mib(r):
    return r["rss"] / 2**20


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    args = [int(a) for a in sys.argv[1:]]
    n, m, big = (args + [8192, 1024, 8192][len(args):])[:3]
    print("load average at the start: %.2f %.2f %.2f" % os.getloadavg())

    d = os.environ.get("PATCHMAP_BENCH_DIR") or tempfile.gettempdir()
    fd, path = tempfile.mkstemp(suffix=".npy", dir=d)
    os.close(fd)
    try:
        run("save", n, path)
        print("1 %% sample of the 8x8 windows of a %d x %d float32 image (np.load, not timed), "
              "each run in its own process, the three ways in turn, %d rounds"
              % (n, n, ROUNDS))
        z = run("baseline", n, path)
        print("  (the interpreter with numpy, scikit-learn and patchmap imported: peak RSS "
              "%.0f MiB; the image: %.0f MiB)" % (mib(z), n * n * 4 / 2**20))
        for what, suffix in (("sampling + copy; patchmap: the lazy sample read once", ""),
                             ("the same + IncrementalPCA(8, batch_size=4096)", "-fit")):
            runs = {"sklearn": [], "patchmap": [], "patchmap-blocks": []}
            for _ in range(ROUNDS):
                for k in runs:
                    runs[k].append(run("sample-" + k + suffix, n, path))
            a = runs["sklearn"]
            ta, ua = median([r["s"] for r in a]), median([r["above"] for r in a])
            print("  %s:" % what)
            for k, label in (("sklearn", "scikit-learn"),
                             ("patchmap", "patchmap, through the mapping"),
                             ("patchmap-blocks", "patchmap.blocks")):
                b = runs[k]
                tb, ub = median([r["s"] for r in b]), median([r["above"] for r in b])
                same = all(r["sha256"] == a[0]["sha256"] for r in b)
                print("    %-30s %.3f s (%s), peak RSS %.0f MiB, %.1f MiB above the image and "
                      "imports%s" % (label, tb, ", ".join("%.3f" % r["s"] for r in b),
                                     mib(b[0]), ub / 2**20, "" if b is a else
                                     ": %.1fx faster (medians), %.1fx less memory above the "
                                     "image and imports, %.2fx less peak RSS; same %s: %s"
                                     % (ta / tb, ua / ub, a[0]["rss"] / b[0]["rss"],
                                        "components" if suffix else "bytes",
                                        "yes" if same else "NO")))
    finally:
        os.unlink(path)

    print("fold of the 8x8 windows of a %d x %d float32 image, matrix in memory (%.0f MB)"
          % (m, m, (m - 7) ** 2 * 256 / 1e6))
    s = run("fold-sklearn", m)
    print("  reconstruct_from_patches_2d (mean, float64): %8.3f s  %6.2f GB/s  peak RSS %5.0f MiB"
          % (s["s"], gbs(s), mib(s)))
    try:
        t = run("fold-torch", m)
        print("  torch F.fold (sum, float32):                 %8.3f s  %6.2f GB/s  peak RSS %5.0f "
              "MiB" % (t["s"], gbs(t), mib(t)))
    except subprocess.CalledProcessError:
        t = None
        print("  torch F.fold: torch does not import here")
    c = run("copy", (m - 7) ** 2 * 256)
    print("  memcpy of the matrix's bytes into memory written before: %.2f GB/s" % gbs(c))
    for mode in ("mean", "sum"):
        for th in (1, 2):
            p = run("fold-patchmap-%s-%d" % (mode, th), m)
            p["copy_rate"] = c["rate"]
            ref = s if mode == "mean" else t
            same = "" if ref is None else "; same bytes as %s: %s" % (
                "scikit-learn" if mode == "mean" else "torch",
                "yes" if ref["sha256"] == p["sha256"] else "no")
            print("  patchmap.fold (%s, %s, %d thread%s):  %8.3f s  %6.2f GB/s  peak RSS %5.0f MiB"
                  "  memcpy %.2f GB/s: %.2fx memcpy%s"
                  % (mode, "float64" if mode == "mean" else "float32", th, "s" if th > 1 else " ",
                     p["s"], gbs(p), mib(p), p["copy_rate"] / 1e9,
                     gbs(p) * 1e9 / p["copy_rate"], same))

    d = run("fold-dtypes", m)
    print("  the sum by input dtype (matrix in memory, converted on the fly): GB/s of matrix "
          "(x memcpy), G values/s; 1 thread | 2 threads")
    for key in sorted(d["rates"], key=lambda k: k.split()):
        dt, odt, th = key.split()
        if th == "1":
            a, b = d["rates"][key], d["rates"]["%s %s 2" % (dt, odt)]
            print("    %-7s -> %-7s  %6.2f (%.2fx) %5.2f | %6.2f (%.2fx) %5.2f"
                  % (dt, odt, a[0] / 1e9, a[0] / c["rate"], a[1] / 1e9, b[0] / 1e9,
                     b[0] / c["rate"], b[1] / 1e9))
    c = run("copy", 1 << 30)
    print("fold (mean, float32) of the lazy 12x12 matrix of a %d x %d float32 image; memcpy "
          "(1 GiB into memory written before) %.2f GB/s" % (big, big, gbs(c)))
    for kind, what in (("fold-lazy", "the whole matrix, read by the fold's threads"),
                       ("fold-lazy-mapped", "a slice of it, read through the mapping")):
        f = run(kind, big)
        print("  %s (%.1f GB): %.2f s  %.2f GB/s of matrix (%.2fx memcpy)  peak RSS %.0f MiB  %s"
              % (what, f["bytes"] / 1e9, f["s"], gbs(f), gbs(f) / gbs(c), mib(f),
                 json.dumps(f["stats"])))
    print("load average at the end: %.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()
