"""patchmap.save(): the bytes numpy.save writes for a copy of the matrix, on
every backend (and "none"), for row slices and padded rows, without a fault
in the mapping; what it refuses; and, as an unprivileged user under
vm.unprivileged_userfaultfd=0, where numpy.save fails, that it works."""

import errno
import io
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest

import patchmap
from conftest import BACKENDS, random_image, reference

PYTHONPATH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def npy_bytes(a):
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_bytes_as_numpy_save(backend, tmp_path):
    img = random_image((150, 170), np.uint16, seed=3)
    X = patchmap.windows(img, (5, 4), step=(1, 2), backend=backend, chunk="64k", budget="256k",
                         dtype=np.float64)
    R = reference(img, (5, 4), (1, 2), dtype=np.float64)
    faults = patchmap.stats(X).faults
    for name, view, ref in [("all", X, R), ("slice", X[17:3001], R[17:3001]),
                            ("strided", X[5::7], R[5::7]), ("backwards", X[::-3], R[::-3]),
                            ("empty", X[4:4], R[4:4])]:
        patchmap.save(tmp_path / name, view)  # ".npy" appended, as numpy.save does
        assert (tmp_path / (name + ".npy")).read_bytes() == npy_bytes(ref), name
    assert patchmap.stats(X).faults == faults  # the mapping was not touched
    assert sorted(os.listdir(tmp_path)) == sorted(
        n + ".npy" for n in ["all", "slice", "strided", "backwards", "empty"])


def test_handle_none_pitch_and_file_objects(tmp_path):
    img = random_image((40, 50), np.int16, seed=4)
    R = reference(img, (3, 3), dtype=np.float32)
    with patchmap.open(img, (3, 3), backend="none") as m:
        patchmap.save(str(tmp_path / "none.npy"), m)
    assert (tmp_path / "none.npy").read_bytes() == npy_bytes(R)
    with patchmap.open(img, (3, 3), row_pitch=64) as m:  # rows padded: gaps not written
        X = m.array
        patchmap.save(tmp_path / "pitch.npy", X)
        patchmap.save(tmp_path / "pitch-slice.npy", X[3:100:2])
        buf = io.BytesIO()
        patchmap.save(buf, X[10:20])  # no descriptor: through memory
        with open(tmp_path / "fobj.npy", "wb") as f:
            f.write(b"lead")
            patchmap.save(f, X)       # at the file's position, straight to its descriptor
            assert f.tell() == 4 + len(npy_bytes(R))
            f.write(b"tail")
        del X
    assert (tmp_path / "pitch.npy").read_bytes() == npy_bytes(R)
    assert (tmp_path / "pitch-slice.npy").read_bytes() == npy_bytes(R[3:100:2])
    assert buf.getvalue() == npy_bytes(R[10:20])
    assert (tmp_path / "fobj.npy").read_bytes() == b"lead" + npy_bytes(R) + b"tail"


def test_replaces_whole_files_only(tmp_path):
    img = random_image((30, 30), np.uint8, seed=5)
    X = patchmap.windows(img, 4)
    out = tmp_path / "out.npy"
    out.write_bytes(b"old")
    os.chmod(out, 0o640)
    patchmap.save(out, X)
    assert out.read_bytes() == npy_bytes(reference(img, 4))
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o640  # its permissions kept
    # Through a symbolic link: the link stays, its target is replaced.
    link = tmp_path / "link.npy"
    target = tmp_path / "target.npy"
    target.write_bytes(b"x")
    link.symlink_to(target.name)
    patchmap.save(link, X[:5])
    assert link.is_symlink() and target.read_bytes() == npy_bytes(reference(img, 4)[:5])
    assert sorted(os.listdir(tmp_path)) == ["link.npy", "out.npy", "target.npy"]


def test_refusals(tmp_path):
    img = random_image((30, 30), np.uint8, seed=6)
    X = patchmap.windows(img, 4)
    ro = tmp_path / "ro.npy"
    ro.write_bytes(b"keep")
    os.chmod(ro, 0o444)
    with pytest.raises(PermissionError, match="read-only") as e:
        patchmap.save(ro, X)
    assert e.value.filename == str(ro) and ro.read_bytes() == b"keep"
    (tmp_path / "d.npy").mkdir()
    with pytest.raises(IsADirectoryError):
        patchmap.save(tmp_path / "d.npy", X)
    missing = tmp_path / "no" / "such.npy"
    with pytest.raises(FileNotFoundError) as e:
        patchmap.save(missing, X)
    assert e.value.filename == str(missing)  # the user's path, not the temporary
    with pytest.raises(ValueError, match="whole rows"):
        patchmap.save(tmp_path / "cols.npy", X[:, 1:])
    with pytest.raises(TypeError):
        patchmap.save(tmp_path / "plain.npy", np.zeros((3, 3)))
    # The source's own file, mapped by numpy.load(mmap_mode="r"), under its
    # name or another link to it: refused, the image intact.
    src = tmp_path / "img.npy"
    np.save(src, img)
    os.link(src, tmp_path / "hard.npy")
    mm = np.load(src, mmap_mode="r")
    Y = patchmap.windows(mm, 4)
    for path in [src, tmp_path / "hard.npy", str(src)[:-4]]:
        with pytest.raises(ValueError, match="source image"):
            patchmap.save(path, Y)
    # ... and open as the file object to write to: refused before any write.
    with open(src, "r+b") as f:
        with pytest.raises(ValueError, match="source image"):
            patchmap.save(f, Y)
        assert f.tell() == 0
    assert np.array_equal(np.load(src), img)
    assert sorted(os.listdir(tmp_path)) == ["d.npy", "hard.npy", "img.npy", "ro.npy"]


def test_disk_full_leaves_nothing(tmp_path):
    """A write that fails part way (a file size limit, in a child) raises
    OSError naming the user's path and leaves no file behind."""
    code = textwrap.dedent("""
        import os, resource, signal, sys, numpy as np, patchmap
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        X = patchmap.windows(np.zeros((300, 300), np.uint8), 8)  # 2.8 MB
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
        try:
            patchmap.save(sys.argv[1], X)
        except OSError as e:
            print(e.errno, e.filename)
        print(sorted(os.listdir(os.path.dirname(sys.argv[1]))))
    """)
    out = str(tmp_path / "big.npy")
    r = subprocess.run([sys.executable, "-c", code, out], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=PYTHONPATH,
                                PATCHMAP_LIBRARY=os.path.abspath(patchmap.library_path())),
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["%d %s" % (errno.EFBIG, out), "[]"]


UNPRIVILEGED = textwrap.dedent("""
    import os, sys, numpy as np, patchmap
    assert os.geteuid() != 0
    out = sys.argv[1]
    img = np.arange(300 * 310, dtype=np.int64).reshape(300, 310) % 251
    X = patchmap.windows(img.astype(np.uint8), (8, 8))  # auto
    st = patchmap.stats(X)
    print("backend", st.backend, " ".join(st.mechanisms))
    try:
        np.save(os.path.join(out, "numpy.npy"), X)
    except OSError as e:
        print("numpy.save failed:", e)
    else:
        print("numpy.save worked")
    patchmap.save(os.path.join(out, "patchmap.npy"), X)
    print("patchmap.save worked")
""")


def test_unprivileged_user(tmp_path):
    """As user nobody (setpriv): with vm.unprivileged_userfaultfd=0, auto
    picks user-mode-only userfaultfd, Stats.mechanisms says so, numpy.save
    fails and patchmap.save writes the exact matrix."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user (runs as uid %d)" % os.geteuid())
    with open("/proc/sys/vm/unprivileged_userfaultfd") as f:
        if f.read().strip() != "0":
            pytest.skip("vm.unprivileged_userfaultfd is not 0 here: nothing to show")
    work = tempfile.mkdtemp(prefix="patchmap-save-")  # reachable by nobody, unlike tmp_path
    try:
        os.chown(work, 65534, 65534)
        env = dict(os.environ, PYTHONPATH=PYTHONPATH,
                   PATCHMAP_LIBRARY=os.path.abspath(patchmap.library_path()))
        env.pop("PATCHMAP_BACKEND", None)
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            "/usr/bin/python3", "-c", UNPRIVILEGED, work],
                           capture_output=True, text=True, env=env, timeout=120, cwd=work)
        assert r.returncode == 0, r.stdout + r.stderr
        written = open(os.path.join(work, "patchmap.npy"), "rb").read()
    finally:
        shutil.rmtree(work)
    lines = r.stdout.splitlines()
    assert lines[0].startswith("backend uffd ") and "uffd_user_only" in lines[0].split(), lines
    assert lines[1].startswith("numpy.save failed:") and "written" in lines[1], lines
    assert lines[2] == "patchmap.save worked"
    img = (np.arange(300 * 310, dtype=np.int64).reshape(300, 310) % 251).astype(np.uint8)
    assert written == npy_bytes(reference(img, (8, 8)))
