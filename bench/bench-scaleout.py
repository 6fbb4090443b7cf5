"""bench-scaleout.py: `patchmap apply`'s filter bank (N random filters at
every window) over one image, single-process and split across Dask workers
(patchmap.dask.windows on a distributed.LocalCluster, 1 thread per worker)
and MPI ranks (examples/mpi-apply.c under mpirun), 1 and 2 of each, in the
same run. Every output is checked byte for byte against apply's (same
blocks of rows, one BLAS thread each); a mismatch exits 1.

    bench-scaleout.py PATCHMAP_TOOL [MPI_APPLY] [--side 8192] [--window 16]
                      [--filters 16] [--budget 256M] [--worker-limit 2GiB]
                      [--engines apply,dask1,dask2,mpi1,mpi2]

Prints wall time, scaling efficiency (T1 / (n * Tn)), the ratio to apply's
time, the peak RSS of every process from the kernel (apply: wait4's
ru_maxrss; a Dask worker: getrusage in the worker; an MPI rank: VmHWM, which
the example prints), and what one block sends and receives. Without
MPI_APPLY or mpirun the MPI rows are left out. PATCHMAP_LIBRARY selects the
library, as for the package.
"""

import argparse
import json
import os
import pickle
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))

MiB = 1 << 20


def timed(cmd, env=None):
    """Runs cmd; its wall time and standard output."""
    t0 = time.perf_counter()
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t0
    if r.returncode:
        sys.exit("bench-scaleout: %s failed (%d):\n%s%s" % (cmd[0], r.returncode, r.stdout,
                                                             r.stderr))
    return dt, r.stdout


def run_apply(tool, img, d, a):
    """apply, measured with wait4 so that its own peak RSS is reported."""
    cmd = [tool, "apply", img, "--window", str(a.window), "--random", str(a.filters),
           "--save-filters", os.path.join(d, "f.npy"), "--out", os.path.join(d, "apply.npy"),
           "--budget", a.budget, "--blas-threads", "1", "--json"]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    out, err = p.stdout.read().decode(), p.stderr.read().decode()
    if os.waitstatus_to_exitcode(status):
        sys.exit("bench-scaleout: apply failed:\n" + err)
    return dt, ru.ru_maxrss * 1024, json.loads(out)


def same_file(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(64 * MiB), fb.read(64 * MiB)
            if x != y:
                return False
            if not x:
                return True


def run_mpi(mpi_apply, ranks, img, d, a, block_rows):
    out = os.path.join(d, "mpi.npy")
    cmd = ["mpirun", "--oversubscribe", "-np", str(ranks)]
    if os.geteuid() == 0:
        cmd.insert(1, "--allow-run-as-root")
    cmd += [mpi_apply, img, os.path.join(d, "f.npy"), out, "--window", str(a.window),
            "--budget", a.budget, "--block-rows", str(block_rows)]
    env = dict(os.environ, OMPI_MCA_btl="self,vader", OPENBLAS_NUM_THREADS="1")
    wall, text = timed(cmd, env)
    secs = float(re.search(r"ranks, ([0-9.]+) s", text).group(1))
    rss = [float(x) * MiB for x in re.findall(r"peak RSS ([0-9.]+) MiB", text)]
    ok = same_file(out, os.path.join(d, "apply.npy"))
    os.unlink(out)
    return {"s": secs, "wall": wall, "rss": rss, "same": ok}


def _write_block(Xb, F, path, hlen, windows, block_info=None):
    """F X_b^T for one block (as apply computes it), written into the
    block's columns of the (N, windows) output on the worker."""
    import numpy as np

    r0 = block_info[0]["array-location"][0][0]
    R = F @ Xb.T
    mm = np.memmap(path, dtype=np.float32, mode="r+", offset=hlen, shape=(F.shape[0], windows))
    mm[:, r0:r0 + R.shape[1]] = R
    mm.flush()
    del mm
    return np.zeros(1, np.uint8)


def _peak():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _rss_now():
    with open("/proc/self/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) * 1024


def run_dask(workers, img, d, a, block_rows, info):
    import numpy as np
    import dask.array as da
    from distributed import Client, LocalCluster

    import patchmap.dask as pmd

    F = np.load(os.path.join(d, "f.npy"))
    N, windows = F.shape[0], info["windows"]
    out = os.path.join(d, "dask.npy")
    with open(out, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False,
                                                 "shape": (N,) + tuple(info["out_shape"])})
        hlen = f.tell()
        f.truncate(hlen + N * windows * 4)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      memory_limit=a.worker_limit, dashboard_address=":0") as cluster, \
            Client(cluster) as c:
        pids = sorted(c.run(os.getpid).values())
        base = c.run(_rss_now)
        X = pmd.windows(img, a.window, budget=a.budget, block_rows=block_rows)
        Y = X.map_blocks(_write_block, F, out, hlen, windows, drop_axis=1,
                         chunks=((1,) * X.numblocks[0],), dtype=np.uint8)
        t0 = time.perf_counter()
        Y.compute()
        dt = time.perf_counter() - t0
        peaks = c.run(_peak)
        restarted = sorted(c.run(os.getpid).values()) != pids
        task = X.dask[(X.name, 0, 0)]
    ok = same_file(out, os.path.join(d, "apply.npy"))
    os.unlink(out)
    return {"s": dt, "rss": [peaks[w] for w in sorted(peaks)],
            "base": [base[w] for w in sorted(base)], "same": ok, "restarted": restarted,
            "task_bytes": len(pickle.dumps(task)), "blocks": X.numblocks[0]}


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        m = re.search(r"model name\s*:\s*(.*)", f.read())
        cpu = m.group(1) if m else cpu
    with open("/proc/meminfo") as f:
        mem = int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1)) / (1 << 20)
    return "%s, %d CPUs, %.1f GiB, Linux %s" % (cpu, os.cpu_count(), mem, platform.release())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("tool")
    p.add_argument("mpi_apply", nargs="?")
    p.add_argument("--side", type=int, default=8192)
    p.add_argument("--window", type=int, default=16)
    p.add_argument("--filters", type=int, default=16)
    p.add_argument("--budget", default="256M")
    p.add_argument("--worker-limit", default="2GiB")
    p.add_argument("--engines", default="apply,dask1,dask2,mpi1,mpi2")
    a = p.parse_args()
    engines = a.engines.split(",")

    import numpy as np
    import patchmap
    import patchmap.dask as pmd

    print("machine:", machine())
    print("command:", " ".join([os.path.basename(sys.executable)] + sys.argv))
    print("load average at start: %s" % open("/proc/loadavg").read().split()[0])
    d = tempfile.mkdtemp(prefix="bench-scaleout-")
    try:
        img = os.path.join(d, "img.npy")
        np.save(img, np.random.default_rng(0).integers(0, 256, (a.side, a.side), np.uint8))
        t_apply, rss_apply, rep = run_apply(a.tool, img, d, a)
        rb = rep["block_rows"]
        desc = patchmap.describe(np.load(img, mmap_mode="r"), a.window)
        info, opts = desc["matrix"], desc["options"]
        print("image %d x %d uint8 (%.0f MiB), %d filters of %d x %d: the float32 matrix is "
              "%d x %d (%.1f GiB), in %d blocks of %d rows; budget %s per process"
              % (a.side, a.side, a.side * a.side / MiB, a.filters, a.window, a.window,
                 info["rows"], info["cols"], info["bytes"] / (1 << 30),
                 -(-info["rows"] // rb), rb, a.budget))
        print()
        print("%-22s %9s %8s %8s %10s  %s" % ("run", "time s", "/apply", "effic.", "same bytes",
                                              "peak RSS per process (MiB)"))
        print("%-22s %9.2f %8.2f %8s %10s  %.0f" % ("patchmap apply", t_apply, 1.0, "-", "ref",
                                                     rss_apply / MiB))
        results = {}
        fail = False
        have_mpi = a.mpi_apply and shutil.which("mpirun")
        for e in engines:
            if e == "apply":
                continue
            n = int(e[-1])
            if e.startswith("dask"):
                r = run_dask(n, img, d, a, rb, info)
                extra = " (at start %s)" % ", ".join("%.0f" % (b / MiB) for b in r["base"])
                if r["restarted"]:
                    extra += " A WORKER WAS RESTARTED"
                    fail = True
                label = "dask, %d worker%s" % (n, "s" if n > 1 else "")
            elif have_mpi:
                r = run_mpi(a.mpi_apply, n, img, d, a, rb)
                extra = " (mpirun wall %.2f s)" % r["wall"]
                label = "mpi, %d rank%s" % (n, "s" if n > 1 else "")
            else:
                continue
            results[e] = r
            one = results.get(e[:-1] + "1")
            eff = "%.2f" % (one["s"] / (n * r["s"])) if one and n > 1 else "-"
            fail |= not r["same"]
            print("%-22s %9.2f %8.2f %8s %10s  %s%s"
                  % (label, r["s"], r["s"] / t_apply, eff, "yes" if r["same"] else "NO",
                     ", ".join("%.0f" % (x / MiB) for x in r["rss"]), extra))
        # What one block moves (Dask; an MPI rank receives only its argv).
        r0, r1 = 0, min(rb, info["rows"])
        lo, hi = pmd.source_rows(opts, info, a.side, r0, r1)
        print()
        print("per block of %d rows: matrix %.1f MiB (built on the worker, never sent); "
              "source rows read %d (%.0f KiB); task sent %s bytes; responses %.1f MiB"
              % (rb, rb * info["ld"] * 4 / MiB, hi - lo, (hi - lo) * a.side / 1024,
                 next((r["task_bytes"] for r in results.values() if "task_bytes" in r), "?"),
                 a.filters * rb * 4 / MiB))
        print("load average at end: %s" % open("/proc/loadavg").read().split()[0])
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return 1 if fail else 0


if __name__ == "__main__":
    sys.exit(main())
