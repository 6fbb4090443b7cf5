"""bench-image.py: a patch-matrix scan of a tiled TIFF decoded lazily (two
lazy layers: the image's region, decoded by libvips band by band, and the
matrix's region over it) against

  (a) decoding the whole file into numpy (tifffile) and then
      sliding_window_view(...)[::s, ::s].reshape(...).astype(float32), on an
      image where that fits in memory, summed the same way;
  (b) the same scan over the image already resident: the image's region
      opened with the eager backend and no budget, so that it is decoded at
      open (the open time is reported apart), then the same lazy matrix.

The scans run in pm-image-dump (C): they read the float32 matrix once, in
order, and checksum its words; the checksums of the lazy and resident scans
must agree. Peak RSS (VmHWM) of each run comes from the kernel. Two images
are written with `vips` (deflate-compressed tiles of 256 x 256, RGB):
MEDIUM (4000 x 4000, all three runs) and BIG (20000 x 20000: the lazy run,
and the resident one only where the machine has 4x the image's bytes
available, as its peak RSS is the image). Beside them, the floor of any
route that decodes: libvips alone decoding the whole file (`vips avg`) with
one thread and with its default concurrency, and the lazy run with two
image filler threads. No assertions on time: ratios to references measured
in the same run.

    bench-image.py PM_IMAGE_DUMP [--big-side N] [--medium-side N] [--repeat N]
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

MiB = 1 << 20
WIN, STEP = 8, 4
LAZY = ["ibudget=64M", "ithreads=1", "mbudget=64M", "mthreads=1"]
LAZY2 = ["ibudget=64M", "ithreads=2", "mbudget=64M", "mthreads=1"]
RESIDENT = ["ibackend=eager", "ibudget=%d" % (1 << 62), "mbudget=64M", "mthreads=1"]


def vips(*a):
    subprocess.run(["vips", *map(str, a)], check=True, capture_output=True)


def make(tmp, side, seed):
    """A side x side RGB tiled BigTIFF (256 x 256 deflate tiles) of a random
    200 x 200 pattern, written by `vips replicate` in one pass."""
    rng = np.random.default_rng(seed)
    period = 200
    tile = rng.integers(0, 256, size=(period, period, 3), dtype=np.uint8)
    tile.tofile(os.path.join(tmp, "tile.raw"))
    vips("rawload", os.path.join(tmp, "tile.raw"), os.path.join(tmp, "tile.v"), period,
         period, 3)
    out = os.path.join(tmp, "img%d.tif" % side)
    n = side // period
    vips("replicate", os.path.join(tmp, "tile.v"),
         out + "[tile,tile-width=256,tile-height=256,compression=deflate,predictor=none,"
         "bigtiff]", n, n)
    return out


def scan(dump, path, *opts):
    args = [dump, "scan", path, "window=%dx%d" % (WIN, WIN), "step=%dx%d" % (STEP, STEP),
            "dtype=float32", *opts]
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(args, capture_output=True, text=True, check=True)
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    got = {k: v for k, v in (line.split("=", 1) for line in r.stdout.splitlines())}
    # CPU seconds of the whole run (open, decode and scan), which a loaded
    # machine inflates far less than the wall clock
    got["cpu_s"] = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
    return got


def decode_floor(path):
    """libvips alone decoding the whole file (`vips avg`, which reads every
    pixel once), with one worker thread and with libvips' default: wall and
    CPU seconds of each."""
    out = {}
    for name, env in (("one", {"VIPS_CONCURRENCY": "1"}), ("default", {})):
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(["vips", "avg", path], check=True, capture_output=True,
                       env=dict(os.environ, **env))
        t1 = time.perf_counter()
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        out[name] = (t1 - t0, (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime))
    return out


def available_bytes():
    """The memory this process may still take, as the library reckons it
    (MemAvailable and the cgroup limits)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                    "python"))
    import patchmap
    return patchmap.memory_available().available or 0


def print_floor(fl, lazy_wall, lazy_cpu):
    print("  libvips alone decoding the file (vips avg): %.2f s wall, %.2f CPU s on one "
          "thread; %.2f s, %.2f CPU s with its default threads"
          % (fl["one"][0], fl["one"][1], fl["default"][0], fl["default"][1]))
    print("  lazy image + lazy matrix: %.2fx the wall of libvips' decode alone (default "
          "threads); %.2f cores busy on average (CPU s / wall s)"
          % (lazy_wall / fl["default"][0], lazy_cpu / lazy_wall))


def numpy_route(path):
    """(a): decode everything with tifffile, materialize the matrix, sum it."""
    import tifffile
    from numpy.lib.stride_tricks import sliding_window_view

    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    a = tifffile.imread(path)
    t1 = time.perf_counter()
    v = sliding_window_view(a, (WIN, WIN), axis=(0, 1))[::STEP, ::STEP]
    m = v.transpose(0, 1, 3, 4, 2).reshape(-1, WIN * WIN * 3).astype(np.float32)
    w = m.reshape(-1).view("<u8")
    s = 0
    block = 1 << 24
    for i in range(0, w.size, block):   # the driver's checksum, in blocks
        weights = np.arange(i, min(i + block, w.size), dtype=np.uint64) % 1024 + 1
        s += int((w[i:i + block] * weights).sum(dtype=np.uint64))
    s %= 1 << 64
    t2 = time.perf_counter()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
            "decode_s": t1 - t0, "matrix_and_scan_s": t2 - t1, "checksum": str(s),
            "hwm_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dump")
    ap.add_argument("--medium-side", type=int, default=4000)
    ap.add_argument("--big-side", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3)
    ns = ap.parse_args()
    print("machine:", os.uname().machine, os.cpu_count(), "cores; load average at start:",
          " ".join("%.2f" % x for x in os.getloadavg()))
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/var/tmp")) as tmp:
        medium = make(tmp, ns.medium_side, 1)
        print("\nMEDIUM %d x %d RGB uint8 (%.0f MiB of pixels), window %dx%d step %d, "
              "float32 matrix" % (ns.medium_side, ns.medium_side,
                                  ns.medium_side ** 2 * 3 / MiB, WIN, WIN, STEP))
        lazy_t, res_t, lazy_c, res_c, two_t, two_c = [], [], [], [], [], []
        for _ in range(ns.repeat):   # alternated, best of each
            lz = scan(ns.dump, medium, *LAZY)
            l2 = scan(ns.dump, medium, *LAZY2)
            rs = scan(ns.dump, medium, *RESIDENT)
            if lz["checksum"] != rs["checksum"]:
                sys.exit("lazy and resident scans differ")
            lazy_t.append(float(lz["seconds"]) + float(lz["open_s"]))
            res_t.append(float(rs["seconds"]))
            lazy_c.append(lz["cpu_s"])
            res_c.append(rs["cpu_s"])
            two_t.append(float(l2["seconds"]) + float(l2["open_s"]))
            two_c.append(l2["cpu_s"])
            if l2["checksum"] != lz["checksum"]:
                sys.exit("lazy scans with one and two image threads differ")
        gb = int(lz["bytes"]) / 1e9
        print("  lazy image + lazy matrix: %.2f s (%.2f GB/s of matrix), peak RSS %d MiB"
              % (min(lazy_t), gb / min(lazy_t), int(lz["hwm_kib"]) >> 10))
        print("  resident image (decoded at open in %.2f s) + lazy matrix: %.2f s (%.2f GB/s),"
              " peak RSS %d MiB" % (float(rs["open_s"]), min(res_t), gb / min(res_t),
                                     int(rs["hwm_kib"]) >> 10))
        print("  (b) lazy / resident scan speed: %.2fx (wall clock)" % (min(res_t) / min(lazy_t)))
        print("  CPU seconds, open + decode + scan: lazy %.2f, resident %.2f (%.2fx)"
              % (min(lazy_c), min(res_c), min(res_c) / min(lazy_c)))
        print("  lazy with two image filler threads: %.2f s, %.2f CPU s"
              % (min(two_t), min(two_c)))
        print_floor(decode_floor(medium), min(lazy_t), min(lazy_c))
        a = numpy_route(medium)
        if a["checksum"] != lz["checksum"]:
            sys.exit("numpy's matrix differs from the lazy scan")
        ta = a["decode_s"] + a["matrix_and_scan_s"]
        print("  (a) tifffile decode %.2f s + sliding_window_view matrix + scan %.2f s = "
              "%.2f s, peak RSS %d MiB" % (a["decode_s"], a["matrix_and_scan_s"], ta,
                                            a["hwm_kib"] >> 10))
        print("  (a) lazy / numpy speed: %.2fx (wall clock); CPU seconds: numpy %.2f, "
              "lazy %.2f (%.2fx)" % (ta / min(lazy_t), a["cpu_s"], min(lazy_c),
                                     a["cpu_s"] / min(lazy_c)))
        os.unlink(medium)

        big = make(tmp, ns.big_side, 2)
        lz = scan(ns.dump, big, *LAZY)
        gb = int(lz["bytes"]) / 1e9
        t = float(lz["seconds"]) + float(lz["open_s"])
        print("\nBIG %d x %d (%.1f GiB of pixels, %.1f GB float32 matrix): lazy image + lazy "
              "matrix %.1f s (%.2f GB/s), %.1f CPU s, peak RSS %d MiB (budgets 64 + 64 MiB)"
              % (ns.big_side, ns.big_side, ns.big_side ** 2 * 3 / (1 << 30), gb, t, gb / t,
                 lz["cpu_s"], int(lz["hwm_kib"]) >> 10))
        if available_bytes() >= 4 * ns.big_side ** 2 * 3:
            rs = scan(ns.dump, big, *RESIDENT)
            if rs["checksum"] != lz["checksum"]:
                sys.exit("lazy and resident scans of BIG differ")
            print("  resident image (decoded at open in %.1f s) + lazy matrix: %.1f s "
                  "(%.2f GB/s), peak RSS %d MiB"
                  % (float(rs["open_s"]), float(rs["seconds"]), gb / float(rs["seconds"]),
                     int(rs["hwm_kib"]) >> 10))
            print("  (b) lazy / resident scan speed: %.2fx (wall clock)"
                  % (float(rs["seconds"]) / t))
        else:
            print("  resident run skipped: less than 4x the image's bytes available")
        print_floor(decode_floor(big), t, lz["cpu_s"])
    print("\nload average at end:", " ".join("%.2f" % x for x in os.getloadavg()))


if __name__ == "__main__":
    main()
