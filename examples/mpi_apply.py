"""mpi_apply.py: the filter bank of `patchmap apply` across MPI ranks, with
mpi4py. Each rank builds the lazy patch matrix of its own rows only (whole
blocks of --block-rows rows, as apply blocks them), multiplies it by the
filters block by block, and writes its part of one .npy with MPI-IO; rank 0
writes the header and renames the finished file into place.

    mpirun -np 2 python3 examples/mpi_apply.py IMG.npy FILTERS.npy OUT.npy 16 \\
        [--step SY SX] [--block-rows R] [--budget B]

With the block rows `patchmap apply --json` reports, OUT.npy equals apply's
output (with --blas-threads 1) byte for byte. Each rank runs one BLAS thread
unless OPENBLAS_NUM_THREADS says otherwise: ranks share the cores, and the
results of a BLAS call depend on its threads.
"""

import argparse
import io
import os
import sys
import tempfile

# before numpy loads OpenBLAS
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402

import patchmap  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("image")
    p.add_argument("filters")
    p.add_argument("out")
    p.add_argument("window", type=int)
    p.add_argument("--step", type=int, nargs="+", default=[1])
    p.add_argument("--budget", default=None)
    p.add_argument("--block-rows", type=int, default=None)
    a = p.parse_args()
    comm, rank, size = MPI.COMM_WORLD, MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size()

    def failed(err):
        """True on every rank if any rank met an error; each says its own
        (ranks on other hosts may fail differently), once per distinct text."""
        errs = comm.allgather(None if err is None else str(err))
        for i, e in enumerate(errs):
            if e is not None and e not in errs[:i] and rank == i:
                print("mpi_apply: %s" % e, file=sys.stderr)
        return any(e is not None for e in errs)

    err = None
    try:
        img = np.load(a.image, mmap_mode="r")
        F = np.load(a.filters)
        for src in (a.image, a.filters):
            if os.path.exists(a.out) and os.path.samefile(a.out, src):
                raise ValueError("%s is an input: refusing to write over it" % a.out)
        if os.path.isdir(a.out):
            raise ValueError("cannot write %s: it is a directory" % a.out)
        opts = dict(step=tuple(a.step), budget=a.budget)
        m = patchmap.describe(img, a.window, **opts)["matrix"]
        if F.dtype != np.float32 or F.shape[1:] != (m["cols"],):
            raise ValueError("%s: the filters must be float32 of shape (N, %d)"
                             % (a.filters, m["cols"]))
    except (OSError, ValueError, TypeError) as e:
        err = e
    if failed(err):
        return 1
    rows = m["rows"]
    rb = a.block_rows or max(1, (64 << 20) // (m["cols"] * 4))
    nblocks = -(-rows // rb)
    if nblocks < size:
        if rank == 0:
            print("mpi_apply: %d ranks for %d block%s of %d rows (%d in all): run fewer "
                  "ranks or give a smaller --block-rows"
                  % (size, nblocks, "" if nblocks == 1 else "s", rb, rows), file=sys.stderr)
        return 1
    b0, b1 = nblocks * rank // size, nblocks * (rank + 1) // size
    r0, r1 = b0 * rb, min(b1 * rb, rows)

    # The output: a temporary beside it, which rank 0 creates and renames
    # into place once every rank has written its part.
    header = np.lib.format.header_data_from_array_1_0(np.empty((0,), np.float32))
    header["shape"] = (F.shape[0],) + tuple(m["out_shape"])
    tmp, err = None, None
    if rank == 0:
        try:
            fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(a.out) + ".",
                                       dir=os.path.dirname(a.out) or ".")
            os.close(fd)
        except OSError as e:
            err = "cannot write %s: %s" % (a.out, e.strerror or e)
    tmp = comm.bcast(tmp, root=0)
    if failed(err):
        return 1
    try:
        fh = MPI.File.Open(comm, tmp, MPI.MODE_WRONLY)
    except MPI.Exception as e:
        fh, err = None, "rank %d: cannot open %s for writing: %s" % (rank, tmp, e)
    if failed(err):
        if fh is not None:
            fh.Close()
        if rank == 0:
            os.unlink(tmp)
        return 1
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    hlen = len(buf.getvalue())
    try:
        if rank == 0:
            fh.Write_at(0, buf.getvalue())
        X = patchmap.select(img, a.window, row_range=(r0, r1), **opts)
        for r in range(r0, r1, rb):
            R = F @ X[r - r0:r - r0 + rb].T              # (filters, rows of the block)
            for f in range(R.shape[0]):
                fh.Write_at(hlen + (f * m["windows"] + r) * 4, np.ascontiguousarray(R[f]))
    except Exception as e:  # every rank must reach the vote below
        err = "rank %d: %s" % (rank, e)
    fh.Close()
    bad = failed(err)
    if rank == 0 and not bad:
        try:
            # the replaced file's permissions, or a new file's
            mode = os.stat(a.out).st_mode & 0o7777 if os.path.exists(a.out) else 0o666 & ~_umask()
            os.chmod(tmp, mode)
            os.replace(tmp, a.out)
            tmp = None
        except OSError as e:
            print("mpi_apply: cannot write %s: %s" % (a.out, e.strerror or e), file=sys.stderr)
            bad = True
    if rank == 0 and tmp is not None:
        os.unlink(tmp)
    return 1 if comm.bcast(bad, root=0) else 0


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


if __name__ == "__main__":
    sys.exit(main())
