"""mpi_apply.py: the filter bank of `patchmap apply` across MPI ranks, with
mpi4py. Each rank builds the lazy patch matrix of its own rows only (whole
blocks of --block-rows rows, as apply blocks them), multiplies it by the
filters block by block, and writes its part of one .npy with MPI-IO; rank 0
writes the header and renames the finished file into place.

    mpirun -np 2 python3 examples/mpi_apply.py IMG.npy FILTERS.npy OUT.npy 16 \\
        [--step SY SX] [--block-rows R] [--budget B]

With the block rows `patchmap apply --json` reports and one BLAS thread per
rank, OUT.npy equals apply's output byte for byte.
"""

import argparse
import os
import sys

import numpy as np
from mpi4py import MPI

import patchmap


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

    img = np.load(a.image, mmap_mode="r")
    F = np.load(a.filters)
    for src in (a.image, a.filters):
        if os.path.exists(a.out) and os.path.samefile(a.out, src):
            if rank == 0:
                print("mpi_apply: %s is an input: refusing to write over it" % a.out,
                      file=sys.stderr)
            return 1
    opts = dict(step=tuple(a.step), budget=a.budget)
    m = patchmap.describe(img, a.window, **opts)["matrix"]
    rows, cols = m["rows"], m["cols"]
    rb = a.block_rows or max(1, (64 << 20) // (cols * 4))
    nblocks = -(-rows // rb)
    if nblocks < size:
        if rank == 0:
            print("mpi_apply: %d ranks for %d blocks of %d rows: run fewer ranks"
                  % (size, nblocks, rb), file=sys.stderr)
        return 1
    b0, b1 = nblocks * rank // size, nblocks * (rank + 1) // size
    r0, r1 = b0 * rb, min(b1 * rb, rows)

    # The output: rank 0 writes the header to a temporary, renamed at the end.
    shape = (F.shape[0],) + tuple(m["out_shape"])
    header = np.lib.format.header_data_from_array_1_0(np.empty((0,), np.float32))
    header["shape"] = shape
    tmp = "%s.%d.tmp" % (a.out, os.getpid()) if rank == 0 else None
    tmp = comm.bcast(tmp, root=0)
    fh = MPI.File.Open(comm, tmp, MPI.MODE_WRONLY | MPI.MODE_CREATE)
    hlen = 0
    if rank == 0:
        import io
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, header)
        fh.Write_at(0, buf.getvalue())
        hlen = len(buf.getvalue())
    hlen = comm.bcast(hlen, root=0)

    ok = True
    try:
        X = patchmap.select(img, a.window, row_range=(r0, r1), **opts)
        for r in range(r0, r1, rb):
            R = F @ X[r - r0:r - r0 + rb].T              # (filters, rows of the block)
            for f in range(R.shape[0]):
                fh.Write_at(hlen + (f * m["windows"] + r) * 4, np.ascontiguousarray(R[f]))
    except Exception as e:  # every rank must reach the vote below
        print("mpi_apply: rank %d: %s" % (rank, e), file=sys.stderr)
        ok = False
    fh.Close()
    ok = comm.allreduce(ok, op=MPI.LAND)
    if rank == 0:
        if ok:
            os.replace(tmp, a.out)
        else:
            os.unlink(tmp)
    return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
