"""The MPI examples under mpirun on loopback (2 ranks, oversubscribed as a
2-core machine needs): each rank's row range through cblas_sgemm, one .npy
written with MPI-IO, equal byte for byte to `patchmap apply`'s; the mpi4py
version in Python likewise; and the bad inputs that must fail cleanly."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

EXE = os.environ.get("PATCHMAP_EXE")
MPI_APPLY = os.environ.get("PATCHMAP_MPI_APPLY")
MPI_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples",
                      "mpi_apply.py")

pytestmark = pytest.mark.skipif(not (EXE and MPI_APPLY and shutil.which("mpirun")),
                                reason="needs the tool, the MPI example and mpirun")


def mpirun(n, *cmd, **kw):
    args = ["mpirun", "--oversubscribe", "-np", str(n)]
    if os.geteuid() == 0:
        args.insert(1, "--allow-run-as-root")
    env = dict(os.environ, OMPI_MCA_btl="self,vader", OMPI_MCA_rmaps_base_oversubscribe="1",
               OPENBLAS_NUM_THREADS="1")
    return subprocess.run(args + [str(c) for c in cmd], capture_output=True, text=True,
                          env=env, timeout=120, **kw)


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    d = tmp_path_factory.mktemp("mpi")
    img = np.random.default_rng(5).integers(0, 256, size=(300, 260), dtype=np.uint8)
    np.save(d / "img.npy", img)
    r = subprocess.run([EXE, "apply", d / "img.npy", "--window", "12", "--step", "1x2",
                        "--random", "6", "--save-filters", d / "f.npy", "--out",
                        d / "apply.npy", "--budget", "16M", "--blas-threads", "1", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    return d, rep["block_rows"]


def test_c_example_equals_apply(job):
    d, rb = job
    r = mpirun(2, MPI_APPLY, d / "img.npy", d / "f.npy", d / "mpi.npy", "--window", "12",
               "--step", "1x2", "--budget", "16M", "--block-rows", rb)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "over 2 ranks" in r.stdout
    assert (d / "mpi.npy").read_bytes() == (d / "apply.npy").read_bytes()


def test_python_example_equals_apply(job):
    d, rb = job
    r = mpirun(2, sys.executable, MPI_PY, d / "img.npy", d / "f.npy", d / "mpi-py.npy", 12,
               "--step", "1", "2", "--budget", "16M", "--block-rows", rb)
    assert r.returncode == 0, r.stderr + r.stdout
    assert (d / "mpi-py.npy").read_bytes() == (d / "apply.npy").read_bytes()


def test_more_ranks_than_blocks(tmp_path):
    np.save(tmp_path / "img.npy", np.zeros((8, 8), np.uint8))
    np.save(tmp_path / "f.npy", np.ones((2, 16), np.float32))
    r = mpirun(3, MPI_APPLY, tmp_path / "img.npy", tmp_path / "f.npy", tmp_path / "o.npy",
               "--window", "4", "--block-rows", "40")
    assert r.returncode != 0
    assert "3 ranks for 1 block of 40 rows (25 in all)" in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["f.npy", "img.npy"]


def test_missing_source_and_output_is_input(tmp_path):
    np.save(tmp_path / "f.npy", np.ones((2, 16), np.float32))
    r = mpirun(2, MPI_APPLY, tmp_path / "nope.npy", tmp_path / "f.npy", tmp_path / "o.npy",
               "--window", "4")
    assert r.returncode != 0 and "nope.npy" in r.stderr
    np.save(tmp_path / "img.npy", np.zeros((8, 8), np.uint8))
    before = (tmp_path / "img.npy").read_bytes()
    r = mpirun(2, MPI_APPLY, tmp_path / "img.npy", tmp_path / "f.npy", tmp_path / "img.npy",
               "--window", "4", "--block-rows", "5")
    assert r.returncode != 0 and "img.npy" in r.stderr
    assert (tmp_path / "img.npy").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["f.npy", "img.npy"]


def test_bad_option(tmp_path):
    np.save(tmp_path / "img.npy", np.zeros((8, 8), np.uint8))
    np.save(tmp_path / "f.npy", np.ones((2, 16), np.float32))
    r = mpirun(2, MPI_APPLY, tmp_path / "img.npy", tmp_path / "f.npy", tmp_path / "o.npy",
               "--window", "4", "--pad-mode", "mirror")
    assert r.returncode != 0 and "pad_mode" in r.stderr
    assert r.stderr.count("pad_mode") == 1  # said once, by rank 0
    assert not (tmp_path / "o.npy").exists()


def example(prog, n, image, filters, out, window, *more):
    """Runs the C (prog "c") or the Python example on n ranks."""
    if prog == "c":
        return mpirun(n, MPI_APPLY, image, filters, out, "--window", window, *more)
    return mpirun(n, sys.executable, MPI_PY, image, filters, out, window, *more)


@pytest.mark.parametrize("prog", ["c", "py"])
def test_more_ranks_than_rows(tmp_path, prog):
    # A 4 x 4 image and a 4 x 4 window: one row of the matrix, two ranks.
    np.save(tmp_path / "img.npy", np.zeros((4, 4), np.uint8))
    np.save(tmp_path / "f.npy", np.ones((2, 16), np.float32))
    r = example(prog, 2, tmp_path / "img.npy", tmp_path / "f.npy", tmp_path / "o.npy", 4)
    assert r.returncode != 0
    assert r.stderr.count("2 ranks for 1 block of ") == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["f.npy", "img.npy"]


def test_python_bad_input(tmp_path):
    # A source no rank can open, a wrong filter bank, an output that is an
    # input: one line each, no traceback, no output file.
    np.save(tmp_path / "f.npy", np.ones((2, 16), np.float32))
    r = example("py", 2, tmp_path / "nope.npy", tmp_path / "f.npy", tmp_path / "o.npy", 4)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.count("nope.npy") == 1, r.stderr
    np.save(tmp_path / "img.npy", np.zeros((8, 8), np.uint8))
    np.save(tmp_path / "g.npy", np.ones((2, 9), np.float32))
    r = example("py", 2, tmp_path / "img.npy", tmp_path / "g.npy", tmp_path / "o.npy", 4)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "shape (N, 16)" in r.stderr
    before = (tmp_path / "img.npy").read_bytes()
    r = example("py", 2, tmp_path / "img.npy", tmp_path / "f.npy", tmp_path / "img.npy", 4,
                "--block-rows", "5")
    assert r.returncode != 0 and "is an input" in r.stderr and "Traceback" not in r.stderr
    assert (tmp_path / "img.npy").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["f.npy", "g.npy", "img.npy"]


def test_a_rank_that_cannot_open_the_source(tmp_path):
    # Ranks on other hosts may not see the file: here rank 1 is given a
    # path that does not exist (the same name under a directory only rank
    # 0 has, through a per-rank wrapper). Both examples vote and stop with
    # no output; the rank that failed says why.
    (tmp_path / "r0").mkdir()
    np.save(tmp_path / "r0" / "img.npy", np.zeros((8, 8), np.uint8))
    np.save(tmp_path / "f.npy", np.ones((2, 16), np.float32))
    wrap = tmp_path / "per-rank"
    wrap.write_text('#!/bin/sh\ncd "%s/r$OMPI_COMM_WORLD_RANK" 2>/dev/null || cd "%s"\n'
                    'exec "$@"\n' % (tmp_path, tmp_path))
    wrap.chmod(0o755)
    for cmd in ([MPI_APPLY, "img.npy", tmp_path / "f.npy", tmp_path / "o.npy", "--window", 4,
                 "--block-rows", 5],
                [sys.executable, MPI_PY, "img.npy", tmp_path / "f.npy", tmp_path / "o.npy", 4,
                 "--block-rows", 5]):
        r = mpirun(2, wrap, *cmd)
        assert r.returncode != 0, r.stdout
        assert "img.npy" in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert sorted(os.listdir(tmp_path)) == ["f.npy", "per-rank", "r0"]


@pytest.mark.parametrize("prog", ["c", "py"])
def test_outputs_that_cannot_be_written(tmp_path, prog):
    """An output that is a directory, or in a directory that does not
    exist: one line, no traceback, nothing left behind; and an existing
    output keeps its permissions when replaced."""
    np.save(tmp_path / "img.npy", np.zeros((8, 8), np.uint8))
    np.save(tmp_path / "f.npy", np.ones((2, 16), np.float32))
    (tmp_path / "dir.npy").mkdir()
    for out, why in [("dir.npy", "directory"), ("nodir/o.npy", "No such file or directory")]:
        r = example(prog, 2, tmp_path / "img.npy", tmp_path / "f.npy", tmp_path / out, 4,
                    "--block-rows", "5")
        assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
        said = [l for l in r.stderr.splitlines() if l.startswith(("mpi_apply:",
                                                                   "patchmap-mpi-apply:"))]
        assert len(said) == 1 and why in said[0], r.stderr
        assert sorted(os.listdir(tmp_path)) == ["dir.npy", "f.npy", "img.npy"]
        assert os.listdir(tmp_path / "dir.npy") == []
    (tmp_path / "o.npy").write_bytes(b"old")
    os.chmod(tmp_path / "o.npy", 0o640)
    r = example(prog, 2, tmp_path / "img.npy", tmp_path / "f.npy", tmp_path / "o.npy", 4,
                "--block-rows", "5")
    assert r.returncode == 0, r.stderr
    assert np.load(tmp_path / "o.npy").shape == (2, 5, 5)
    assert os.stat(tmp_path / "o.npy").st_mode & 0o7777 == 0o640
    assert sorted(os.listdir(tmp_path)) == ["dir.npy", "f.npy", "img.npy", "o.npy"]
