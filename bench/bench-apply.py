"""A filter bank: `patchmap apply` against torch's conv2d at the same total
thread count. 16 random float32 filters of 16 x 16 over a SIDE x SIDE uint8
image (default 4096), float32 responses. Each run is its own process, so
that its peak RSS (ru_maxrss of the child) is its own; the median of REPS
runs is reported (default 3), every ratio from this one run, with the
median CPU seconds (user + system) of each child: on a shared machine they
show what the wall clock cannot (a second thread that found no free core).

Usage: python3 bench/bench-apply.py PATCHMAP [SIDE [REPS]]
PATCHMAP is the tool (build/tools/patchmap).

Without a mapping (the tool's default) its threads are its workers, each
reading its rows with pm_matrix_read and multiplying them with the tool's
filter-bank kernel (AVX-512 or AVX2), or with one BLAS thread
(PATCHMAP_APPLY_KERNEL=blas, the variants so named). Through a mapping
they are its BLAS threads plus the library's filler threads (the uffd
backend's poller fills demand chunks too, but sleeps while a filler
thread reads ahead). torch gets
torch.set_num_threads(the same total). The tool's time includes writing
its output file; torch's includes the uint8 -> float32 conversion of the
image but no output file. Each run's output file is deleted when it ends,
before the kernel writes it back, and os.sync() runs before each run.
The responses are compared (float32 sums in different orders: a relative
tolerance)."""

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

K, N = 16, 16


def torch_child(img_path, filt_path, threads, out_path):
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    img = np.load(img_path)
    F = np.load(filt_path)
    w = torch.from_numpy(F.reshape(N, 1, K, K))
    t0 = time.perf_counter()
    x = torch.from_numpy(img).to(torch.float32)[None, None]
    with torch.no_grad():
        y = torch.nn.functional.conv2d(x, w)
    dt = time.perf_counter() - t0
    if out_path:
        np.save(out_path, y[0].numpy())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"s": dt, "rss": rss}))


def cpu_children():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_torch(img, filt, threads, out=""):
    c0 = cpu_children()
    r = subprocess.run([sys.executable, __file__, "--torch-child", img, filt, str(threads), out],
                       check=True, capture_output=True, text=True)
    j = json.loads(r.stdout)
    j["cpu"] = cpu_children() - c0  # the whole child: loading numpy and torch too
    return j


def run_tool(tool, img, filt, out, extra, kernel=None, keep=False):
    cmd = [tool, "apply", img, "--window", "%dx%d" % (K, K), "--filters", filt, "--out", out,
           "--json"] + extra
    env = dict(os.environ)
    env.pop("PATCHMAP_APPLY_KERNEL", None)
    if kernel:
        env["PATCHMAP_APPLY_KERNEL"] = kernel
    c0 = cpu_children()
    r = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    j = json.loads(r.stdout)
    # the output goes before its pages are written back: the next run is
    # not timed beside the writeback of this one (a core of two)
    if not keep:
        os.unlink(out)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"s": j["seconds"], "rss": j["peak_rss_bytes"], "blas": j["blas_threads"],
            "kernel": j["kernel"],
            "threads": j.get("threads", "-"),
            "backend": j["lazy"]["backend"], "maxrss_children": ru.ru_maxrss,
            "cpu": cpu_children() - c0}


def main():
    import numpy as np

    tool = sys.argv[1]
    side = int(sys.argv[2]) if len(sys.argv) > 2 else 4096
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    print("command: %s" % " ".join(sys.argv))
    print("machine: %d CPUs; load average at the start: %s" % (os.cpu_count(), os.getloadavg()))
    with tempfile.TemporaryDirectory() as d:
        rng = np.random.default_rng(0)
        img_p, filt_p = os.path.join(d, "img.npy"), os.path.join(d, "filt.npy")
        np.save(img_p, rng.integers(0, 256, (side, side), dtype=np.uint8))
        np.save(filt_p, rng.uniform(-1, 1, (N, K, K)).astype(np.float32))
        out_p, ref_p = os.path.join(d, "out.npy"), os.path.join(d, "ref.npy")

        # results first: the tool's responses against torch's
        run_torch(img_p, filt_p, 2, ref_p)
        b = np.load(ref_p, mmap_mode="r")
        for kernel in (None, "blas"):
            run_tool(tool, img_p, filt_p, out_p, [], kernel, keep=True)
            a = np.load(out_p, mmap_mode="r")
            if a.shape != b.shape:
                sys.exit("shapes differ: %s against torch's %s" % (a.shape, b.shape))
            for i in range(N):
                if not np.allclose(a[i], b[i], rtol=1e-4, atol=1e-2):
                    sys.exit("filter %d: the responses (kernel %s) differ from torch's"
                             % (i, kernel or "default"))
            del a
            os.unlink(out_p)
        del b
        os.unlink(ref_p)

        variants = [
            ("tool, defaults (no mapping)", ["tool", []]),
            ("tool, no mapping, 1 thread", ["tool", ["--threads", "1"]]),
            ("tool, no mapping, BLAS", ["blas", []]),
            ("tool, no mapping, BLAS, 1 thread", ["blas", ["--threads", "1"]]),
            ("tool, uffd, 1 filler + 1 BLAS thread", ["tool", ["--backend", "uffd", "--threads",
                                                                "1", "--blas-threads", "1"]]),
            ("tool, uffd, 2 fillers + 1 BLAS thread", ["tool", ["--backend", "uffd", "--threads",
                                                                 "2", "--blas-threads", "1"]]),
            ("torch conv2d, 1 thread", ["torch", 1]),
            ("torch conv2d, 2 threads", ["torch", 2]),
        ]
        res = {}
        for _ in range(reps):
            for name, (kind, arg) in variants:
                os.sync()
                try:
                    if kind in ("tool", "blas"):
                        r = run_tool(tool, img_p, filt_p, out_p, arg,
                                     "blas" if kind == "blas" else None)
                    else:
                        r = run_torch(img_p, filt_p, arg)
                except subprocess.CalledProcessError as e:
                    r = {"s": float("nan"), "rss": 0, "cpu": float("nan"), "err": e.stderr.strip()}
                res.setdefault(name, []).append(r)
                print("  run: %-40s %.3f s" % (name, r["s"]), flush=True)
    mat = (side - K + 1) ** 2 * K * K * 4
    t2 = statistics.median(r["s"] for r in res["torch conv2d, 2 threads"])
    t1 = statistics.median(r["s"] for r in res["torch conv2d, 1 thread"])
    print("image %d x %d uint8, %d filters %d x %d, float32; matrix %.2f GB; median of %d"
          % (side, side, N, K, K, mat / 1e9, reps))
    print("%-40s %8s %8s %10s %10s %12s %8s" % ("case", "s", "GB/s", "x torch 1", "x torch 2",
                                                 "peak RSS MiB", "CPU s"))
    for name, _ in variants:
        rs = res[name]
        s = statistics.median(r["s"] for r in rs)
        rss = max(r["rss"] for r in rs) / 2**20
        extra = ""
        if "blas" in rs[0]:
            extra = "  (%s, threads %s, kernel %s, BLAS threads %s)" % (
                rs[0]["backend"], rs[0]["threads"], rs[0]["kernel"], rs[0]["blas"])
        if "err" in rs[0]:
            extra = "  error: " + rs[0]["err"]
        cpu = statistics.median(r["cpu"] for r in rs)
        print("%-40s %8.3f %8.2f %10.2f %10.2f %12.0f %8.2f%s" % (name, s, mat / s / 1e9, t1 / s,
                                                              t2 / s, rss, cpu, extra))
    print("load average at the end: %s" % (os.getloadavg(),))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--torch-child":
        torch_child(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        main()
