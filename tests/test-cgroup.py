#!/usr/bin/python3
"""Budgets under a memory cgroup: the test makes a memory cgroup of its own
(cgroup v2 where one is mounted and the memory controller can be delegated
to a child of this process's cgroup, cgroup v1 otherwise), limits it to
200 MiB, runs the front ends inside it and removes it afterwards, whatever
happened. Exit 0 pass, 1 fail, 77 skipped (with the reason on stdout) where
this machine or user may not make one.

Inside the cgroup:
 - patchmap.windows of an 8192 x 8192 image, read at 400 random rows under
   the default budget: the rows equal numpy's, no OOM kill, and the budget
   was lowered to half of what the cgroup leaves;
 - an explicit 1 GiB budget is refused at open, naming the cgroup's limit,
   in Python, in the tool, in a descriptor of the preload shim, and by the
   library itself (pm_region_open, -PM_EMEMORY);
 - an eager matrix and an unlimited budget of ~300 MiB (far less than the
   machine has) are refused the same way;
 - imread of an image larger than the limit with a budget that keeps all
   of it is refused with patchmap.OutOfMemory;
 - `patchmap doctor` reports the cgroup's limit.

usage: test-cgroup.py PATCHMAP_EXE LIBPATCHMAP SOURCE_ROOT [PRELOAD_SHIM]
"""
import os
import re
import subprocess
import sys
import tempfile

SKIP = 77
LIMIT = 200 << 20


def mounts():
    """[(fstype, root, mount point, super options)] of the cgroup mounts."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fields, tail = pre.split(), post.split()
            if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
                continue
            unesc = lambda s: re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)
            out.append((tail[0], unesc(fields[3]), unesc(fields[4]), tail[2].split(",")))
    return out


def self_cgroups():
    """{"v2": path, "v1": memory controller's path} from /proc/self/cgroup."""
    out = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            hid, ctrl, path = line.rstrip("\n").split(":", 2)
            if hid == "0" and ctrl == "":
                out["v2"] = path
            elif "memory" in ctrl.split(","):
                out["v1"] = path
    return out


def below(mount_root, path):
    if mount_root != "/" and (path == mount_root or path.startswith(mount_root + "/")):
        return path[len(mount_root):]
    return path


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def make_v2(name, why):
    cg = self_cgroups().get("v2")
    for fstype, root, point, _ in mounts():
        if fstype != "cgroup2" or cg is None:
            continue
        parent = point + below(root, cg)
        try:
            with open(os.path.join(parent, "cgroup.controllers")) as f:
                if "memory" not in f.read().split():
                    why.append("cgroup v2 at %s: no memory controller to delegate" % point)
                    continue
        except OSError as e:
            why.append("cgroup v2 at %s: %s" % (point, e.strerror))
            continue
        d = os.path.join(parent, name)
        try:
            os.mkdir(d)
        except OSError as e:
            why.append("cgroup v2: cannot create a cgroup in %s: %s" % (parent, e.strerror))
            continue
        try:
            if not os.path.exists(os.path.join(d, "memory.max")):
                write(os.path.join(parent, "cgroup.subtree_control"), "+memory")
            write(os.path.join(d, "memory.max"), str(LIMIT))
            write(os.path.join(d, "memory.swap.max"), "0") if os.path.exists(
                os.path.join(d, "memory.swap.max")) else None
            return "v2", d, os.path.join(cg.rstrip("/"), name) if cg != "/" else "/" + name
        except OSError as e:
            why.append("cgroup v2: cannot delegate memory to %s: %s" % (d, e.strerror))
            os.rmdir(d)
    return None


def make_v1(name, why):
    cg = self_cgroups().get("v1")
    for fstype, root, point, opts in mounts():
        if fstype != "cgroup" or "memory" not in opts or cg is None:
            continue
        parent = point + below(root, cg)
        d = os.path.join(parent, name)
        try:
            os.mkdir(d)
        except OSError as e:
            why.append("cgroup v1 memory at %s: cannot create a cgroup: %s" % (parent, e.strerror))
            continue
        try:
            write(os.path.join(d, "memory.limit_in_bytes"), str(LIMIT))
            if os.path.exists(os.path.join(d, "memory.memsw.limit_in_bytes")):
                write(os.path.join(d, "memory.memsw.limit_in_bytes"), str(LIMIT))
            return "v1", d, os.path.join(cg, name) if cg != "/" else "/" + name
        except OSError as e:
            why.append("cgroup v1 memory: cannot limit %s: %s" % (d, e.strerror))
            os.rmdir(d)
    return None


def oom_kills(version, d):
    name = "memory.events" if version == "v2" else "memory.oom_control"
    try:
        with open(os.path.join(d, name)) as f:
            for line in f:
                k, _, v = line.partition(" ")
                if k == "oom_kill":
                    return int(v)
    except OSError:
        pass
    return 0


def remove(d):
    """Ends what is left in the cgroup (only processes this test started
    can be there) and removes it."""
    for _ in range(50):
        try:
            with open(os.path.join(d, "cgroup.procs")) as f:
                pids = [int(p) for p in f.read().split()]
        except OSError:
            pids = []
        for p in pids:
            try:
                os.kill(p, 9)
            except OSError:
                pass
        try:
            os.rmdir(d)
            return
        except OSError:
            import time
            time.sleep(0.1)
    print("warning: could not remove the test cgroup %s" % d)


PY_READ = r"""
import numpy as np, patchmap
from numpy.lib.stride_tricks import sliding_window_view
rng = np.random.default_rng(7)
img = rng.integers(0, 256, size=(8192, 8192), dtype=np.uint8)
X = patchmap.windows(img, (16, 16))
rows = rng.integers(0, X.shape[0], size=400)
got = X[np.sort(rows)]  # a fancy index: a copy of the 400 rows
V = sliding_window_view(img, (16, 16))
ow = V.shape[1]
ref = np.stack([V[r // ow, r % ow].reshape(-1) for r in np.sort(rows)]).astype(np.float32)
assert got.dtype == np.float32 and np.array_equal(got, ref), "rows differ from numpy's"
st = patchmap.stats(X)
print("budget", st.budget_bytes, "lowered", st.budget_lowered, "available", st.memory_available)
assert st.budget_lowered, st
assert st.budget_bytes <= st.memory_available // 2 + st.chunk_bytes, st
assert st.peak_resident_bytes <= st.budget_bytes
del X
print("ok")
"""

PY_REFUSE = r"""
import ctypes, sys, numpy as np, patchmap
from patchmap import _lib as L
cg = sys.argv[1]
img = np.zeros((8192, 8192), np.uint8)
def refused(what, **kw):
    try:
        patchmap.windows(img if what != "eager" else small, (16, 16) if what != "eager" else (8, 8), **kw)
    except patchmap.OutOfMemory as e:
        msg = str(e)
        print(what, "->", msg)
        assert "the cgroup memory limit of %s allows" % cg in msg, msg
        return msg
    raise AssertionError(what + " was not refused")
small = np.zeros((1100, 1100), np.uint8)  # its 8x8 patch matrix: ~306 MiB of float32
m = refused("budget", budget="1G")
assert "the budget asks 1.00 GiB" in m, m
m = refused("eager", backend="eager")
assert "eager would keep all" in m, m
try:
    patchmap.windows(small, (8, 8), budget="unlimited")
    raise AssertionError("unlimited was not refused")
except patchmap.OutOfMemory as e:
    assert "the cgroup memory limit of %s allows" % cg in str(e), str(e)
    assert "budget unlimited would keep all" in str(e), str(e)

# the library itself, without a front end's check: refused at open
lib = L.lib()
FILL = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                        ctypes.c_size_t)
fill = FILL(lambda ctx, off, dst, n: ctypes.memset(dst, 0, n) and 0)
class ropts(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("length", ctypes.c_size_t), ("fill", FILL),
                ("ctx", ctypes.c_void_p), ("lazy", L.pm_lazy_opts)]
open_ = lib.pm_region_open
open_.restype = ctypes.c_int
open_.argtypes = [ctypes.POINTER(ropts), ctypes.POINTER(ctypes.c_void_p)]
r = ctypes.c_void_p()
for backend, budget, length in ((L.PM_BACKEND_AUTO, 1 << 30, 4 << 30),
                                (L.PM_BACKEND_SIGSEGV, 1 << 30, 4 << 30),
                                (L.PM_BACKEND_EAGER, 0, 300 << 20),
                                (L.PM_BACKEND_AUTO, (1 << 64) - 1, 300 << 20)):
    o = ropts(ctypes.sizeof(ropts), length, fill, None, L.pm_lazy_opts(backend=backend, budget=budget))
    code = open_(ctypes.byref(o), ctypes.byref(r))
    assert code == -L.PM_EMEMORY and not r.value, (backend, budget, code)
m = L.pm_memory(ctypes.sizeof(L.pm_memory))
assert lib.pm_memory_available(ctypes.byref(m)) == 0
assert m.kind in (L.PM_MEMORY_CGROUP_V1, L.PM_MEMORY_CGROUP_MAX), m.kind
assert m.cgroup.decode() == cg and m.limit == 200 << 20, (m.cgroup, m.limit)
print("ok")
"""


PY_IMREAD = r"""
import sys, patchmap
cg = sys.argv[2]
for kw in ({"budget": "unlimited"}, {"backend": "eager"}, {"budget": "1G"}):
    try:
        patchmap.imread(sys.argv[1], **kw)
    except patchmap.OutOfMemory as e:
        assert "the cgroup memory limit of %s allows" % cg in str(e), str(e)
        print(kw, "->", e)
        continue
    raise AssertionError("imread(%r) was not refused" % kw)
print("ok")
"""


def run_in(d, argv, env, cwd=None):
    """argv run inside cgroup d: (exit status, stdout + stderr)."""
    procs = os.path.join(d, "cgroup.procs")
    sh = 'echo $$ > "$0" && exec "$@"'
    p = subprocess.run(["/bin/sh", "-c", sh, procs] + argv, env=env, cwd=cwd,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    return p.returncode, p.stdout


def main():
    if len(sys.argv) < 4:
        print(__doc__)
        return 2
    exe, libpath, src = sys.argv[1:4]
    shim = sys.argv[4] if len(sys.argv) > 4 else None
    name = "pmtest-%d" % os.getpid()
    why = []
    made = make_v2(name, why) or make_v1(name, why)
    if not made:
        print("SKIP: no memory cgroup can be made here: " + "; ".join(why or ["no cgroup mounts"]))
        return SKIP
    version, d, cg = made
    print("cgroup %s %s (%s), limit %d MiB" % (version, cg, d, LIMIT >> 20))
    env = dict(os.environ, PATCHMAP_LIBRARY=libpath, PYTHONPATH=os.path.join(src, "python"),
               PYTHONDONTWRITEBYTECODE="1")
    env.pop("PATCHMAP_BACKEND", None)
    failures = []

    def check(what, ok, out):
        print("%s: %s" % (what, "ok" if ok else "FAILED"))
        if not ok:
            print("  " + out.replace("\n", "\n  "))
            failures.append(what)

    try:
        with tempfile.TemporaryDirectory() as tmp:
            code, out = run_in(d, [sys.executable, "-c", PY_READ], env)
            kills = oom_kills(version, d)
            print("".join(l for l in out.splitlines(True) if l.startswith("budget ")), end="")
            check("random rows under the default budget (exit %d, %d OOM kills)" % (code, kills),
                  code == 0 and kills == 0 and out.rstrip().endswith("ok"), out)

            code, out = run_in(d, [sys.executable, "-c", PY_REFUSE, cg], env)
            check("Python and the library refuse what does not fit", code == 0, out)

            # imread: an image larger than the limit, with a budget that
            # would keep all of it: OutOfMemory (a MemoryError), as windows()
            ilib = os.path.join(os.path.dirname(libpath), "image", "libpatchmap-image.so")
            if os.path.exists(ilib):
                tif = os.path.join(tmp, "big.tif")
                subprocess.run(["vips", "black", tif + "[tile,compression=deflate]", "16384",
                                "16384"], check=True, capture_output=True)
                code, out = run_in(d, [sys.executable, "-c", PY_IMREAD, tif, cg],
                                   dict(env, PATCHMAP_IMAGE_LIBRARY=ilib))
                check("imread refuses an image region that does not fit",
                      code == 0 and out.rstrip().endswith("ok"), out)
            else:
                print("imread: not checked (libpatchmap-image not built)")

            # the tool: one line naming the limit, exit 1, no output file
            import numpy as np
            np.save(os.path.join(tmp, "img.npy"), np.zeros((2048, 2048), np.uint8))
            o = os.path.join(tmp, "out.npy")
            code, out = run_in(d, [exe, "apply", os.path.join(tmp, "img.npy"), "--window",
                                   "16x16", "--random", "1", "--out", o, "--budget", "1G"], env)
            want = ("patchmap: budget: the cgroup memory limit of %s allows " % cg)
            check("the tool refuses --budget 1G",
                  code == 1 and out.startswith(want) and "the budget asks 1.00 GiB" in out
                  and len(out.strip().splitlines()) == 1 and not os.path.exists(o), out)
            code, out = run_in(d, [exe, "apply", os.path.join(tmp, "img.npy"), "--window",
                                   "8x8", "--random", "1", "--out", o, "--backend", "eager"], env)
            check("the tool's eager guard uses the cgroup's limit",
                  code == 1 and ("the cgroup memory limit of %s allows" % cg) in out
                  and "eager would keep all" in out, out)

            # a descriptor of the preload shim
            if shim:
                desc = os.path.join(tmp, "m.patchmap")
                with open(desc, "w") as f:
                    f.write("source = img.npy\nwindow = 16x16\nbudget = 1G\n")
                code, out = run_in(d, ["/bin/cat", desc], dict(env, LD_PRELOAD=shim))
                check("a descriptor with budget 1G is refused",
                      code != 0 and ("the cgroup memory limit of %s allows" % cg) in out
                      and "m.patchmap:3: budget:" in out, out)

            code, out = run_in(d, [exe, "doctor"], env)
            lim = re.search(r"^memory limit: (.*)$", out, re.M)
            avail = re.search(r"^memory available: (.*)$", out, re.M)
            kind = "cgroup v1 memory.limit_in_bytes" if version == "v1" else "cgroup v2 memory.max"
            check("patchmap doctor reports the limit",
                  code == 0 and lim and lim.group(1).startswith("%s of %s (200 MiB" % (kind, cg))
                  and avail and avail.group(1).endswith("(the cgroup memory limit of %s)" % cg)
                  and "default budget:" in out and "raise the job's memory limit" in out, out)
    finally:
        remove(d)
    if failures:
        print("FAILED: " + ", ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
