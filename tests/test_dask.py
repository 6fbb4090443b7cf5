"""patchmap.dask on a distributed.LocalCluster of two worker processes (one
thread each, a memory limit each) against the single-process results.

The matrix is larger than either worker's memory limit; each block is a
lazy row-range matrix built on its worker. Results are compared bit for bit
with the same computation done block by block in this process, with one
BLAS thread (the workers' setting): OpenBLAS's results depend on the call's
blocking, so equal blocks are what makes equal results.
"""

import os
import resource
import subprocess
import sys

import numpy as np
import pytest

import patchmap

dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")
import dask.array as da  # noqa: E402
import patchmap.dask as pmd  # noqa: E402

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

WORKER_LIMIT = 768 << 20
BUDGET = "32M"


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           memory_limit=WORKER_LIMIT, dashboard_address=":0")
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


def worker_pids(c):
    return sorted(c.run(os.getpid).values())


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    d = tmp_path_factory.mktemp("dask")
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, size=(1400, 1500), dtype=np.uint8)
    path = d / "img.npy"
    np.save(path, img)
    return path, img


def single(img, window, **kw):
    kw.setdefault("budget", BUDGET)
    return patchmap.windows(img, window, **kw)


def blocks_of(X):
    """(start, stop) of each row block of a dask array."""
    out, a = [], 0
    for n in X.chunks[0]:
        out.append((a, a + n))
        a += n
    return out


def one_thread():
    if threadpool_limits is None:
        pytest.skip("threadpoolctl is not installed: the single-process BLAS reference "
                    "cannot be held to one thread")
    return threadpool_limits(1)


def test_larger_than_a_worker(client, image):
    path, img = image
    X = pmd.windows(str(path), (16, 16), budget=BUDGET, block_bytes="16M")
    assert X.nbytes > 2 * WORKER_LIMIT
    assert X.shape == (1385 * 1485, 256) and X.dtype == np.float32


def test_matmul_sum_mean_decision_rows(client, image):
    path, img = image
    pids = worker_pids(client)
    X = pmd.windows(str(path), (16, 16), budget=BUDGET, block_bytes="16M")
    R = single(img, (16, 16))
    W = np.random.default_rng(1).standard_normal((256, 8)).astype(np.float32)

    got = (X @ W).compute()
    with one_thread():
        want = np.concatenate([R[a:b] @ W for a, b in blocks_of(X)])
    assert np.array_equal(got, want)

    # The dask reductions' order is the same whichever scheduler runs them:
    # the distributed result equals the one computed in this process.
    s = X.sum(axis=0)
    assert np.array_equal(s.compute(), s.compute(scheduler="synchronous"))
    m = X.mean()
    assert m.compute() == m.compute(scheduler="synchronous")
    # In float64 the sums of these integers are exact in any order: they
    # equal numpy's over the whole single-process matrix.
    X64 = pmd.windows(str(path), (16, 16), dtype="float64", budget=BUDGET, block_bytes="16M")
    R64 = single(img, (16, 16), dtype="float64")
    assert np.array_equal(X64.sum(axis=0).compute(), R64.sum(axis=0))
    assert X64.mean().compute() == R64.sum() / R64.size

    from sklearn.linear_model import RidgeClassifier

    sample = np.random.default_rng(2).choice(R.shape[0], 4000, replace=False)
    y = (R[sample].mean(axis=1) > 127).astype(int)
    clf = RidgeClassifier().fit(R[sample], y)
    got = da.map_blocks(clf.decision_function, X, drop_axis=1, dtype=np.float64).compute()
    with one_thread():
        want = np.concatenate([clf.decision_function(R[a:b]) for a, b in blocks_of(X)])
    assert np.array_equal(got, want)

    rows = np.random.default_rng(3).choice(R.shape[0], 500)
    assert np.array_equal(X[rows].compute(), R[rows])
    assert worker_pids(client) == pids, "a worker was restarted"
    # Each worker's peak RSS, from the kernel: its runtime, a block's
    # budget and outputs, the model and the gathered rows; far from the
    # 2.1 GB matrix.
    peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10)
    assert max(peaks.values()) < WORKER_LIMIT // 2, peaks


@pytest.mark.parametrize("pad_mode", ["zero", "reflect", "symmetric", "edge", "wrap"])
def test_dask_source_slabs(client, pad_mode):
    rng = np.random.default_rng(11)
    img = rng.integers(0, 1000, size=(90, 70), dtype=np.int32)
    S = da.from_array(img, chunks=(17, 70))
    kw = dict(step=(2, 3), dilation=(2, 1), pad_mode=pad_mode, budget="1M", chunk="256K", dtype="float64")
    X = pmd.windows(S, (5, 4), block_rows=37, **kw)
    assert np.array_equal(X.compute(), single(img, (5, 4), **kw))


def test_dask_source_reads_only_its_rows(image):
    # Each block's task receives the slab of source rows its windows read.
    img = np.arange(200 * 30, dtype=np.int64).reshape(200, 30)
    S = da.from_array(img, chunks=(10, 30))
    X = pmd.windows(S, (3, 3), block_rows=28 * 10)
    opts = patchmap.describe(img, (3, 3))
    for i, (a, b) in enumerate(blocks_of(X)):
        lo, hi = pmd.source_rows(opts["options"], opts["matrix"], 200, a, b)
        # its window rows (28 windows each), and two more rows for the window
        assert hi - lo == (b - a) // 28 + 2 and lo == a // 28
    assert np.array_equal(X.compute(scheduler="synchronous"), single(img, (3, 3)))


def test_memmap_and_array_sources(client, tmp_path):
    img = np.arange(60 * 50, dtype=np.uint16).reshape(60, 50)
    raw = tmp_path / "img.raw"
    img.tofile(raw)
    mm = np.memmap(raw, dtype=np.uint16, mode="r", shape=(60, 50))
    want = single(img, (4, 4), step=2)
    assert np.array_equal(pmd.windows(mm, (4, 4), step=2, block_rows=100).compute(), want)
    assert np.array_equal(pmd.windows(img, (4, 4), step=2, block_rows=100).compute(), want)
    with pytest.raises(ValueError, match="slice or view"):
        pmd.windows(mm[1:], (4, 4))


def test_bad_inputs(client, tmp_path):
    with pytest.raises(ValueError, match="layout"):
        pmd.windows(np.zeros((8, 8), np.uint8), 2, layout="cols")
    with pytest.raises(ValueError, match="block_rows"):
        pmd.windows(np.zeros((8, 8), np.uint8), 2, block_rows=0)
    # Row selections are refused when the graph is built, not when it runs.
    for kw, name in [({"rows": [3, 5]}, "rows"), ({"mask": np.ones((7, 7), bool)}, "mask"),
                     ({"row_range": (1, 4)}, "row_range"), ({"sample": 5}, "sample"),
                     ({"sample": 5, "random_state": 1}, "sample=, random_state")]:
        with pytest.raises(ValueError, match=r"^patchmap\.dask\.windows: %s= not taken .* "
                                             r"index the result instead, X\[rows\]" % name):
            pmd.windows(np.zeros((8, 8), np.uint8), 2, **kw)
    # A source the workers cannot open: a clear error from the task.
    path = tmp_path / "gone.npy"
    np.save(path, np.zeros((20, 20), np.uint8))
    X = pmd.windows(str(path), 4, block_rows=50)
    path.unlink()
    pmd._opened.clear()
    with pytest.raises(OSError, match="cannot open the source"):
        X.sum().compute()


@pytest.mark.parametrize("mode", ["sum", "mean", "count"])
def test_fold_across_workers(client, mode):
    rng = np.random.default_rng(13)
    img = rng.integers(0, 200, size=(70, 64), dtype=np.uint8)
    kw = dict(step=(2, 1), pad_mode="reflect")
    X = pmd.windows(img, (5, 4), dtype="float64", block_rows=333, **kw)
    R = single(img, (5, 4), dtype="float64", **kw)
    got = pmd.fold(X, img.shape, (5, 4), mode=mode, **kw).compute()
    assert np.array_equal(got, patchmap.fold(R, img.shape, (5, 4), mode=mode, **kw))
    # one value per window
    s = X.sum(axis=1)
    got = pmd.fold(s, img.shape, (5, 4), mode="sum", **kw).compute()
    want = patchmap.fold(R.sum(axis=1), img.shape, (5, 4), mode="sum", **kw)
    assert np.array_equal(got, want)


FOLD_CASES = [
    ((70, 64), (5, 4), dict(step=(2, 1), pad_mode="reflect")),
    ((70, 64), (5, 4), dict(step=(3, 2), padding=((7, 9), (2, 1)), pad_mode="edge")),
    ((40, 30, 3), (3, 3), dict(dilation=(2, 1), padding="same")),
    ((3, 40, 30), (3, 3), dict(channel_axis=0, order="channel", step=2)),
    ((20, 10, 12), (3, 2, 2), dict(padding=1)),
    ((200,), (7,), dict(step=3, padding=(10, 12))),
    ((30, 30), (4, 4), dict(step=(9, 1))),  # rows no window covers
]


@pytest.mark.parametrize("shape,window,kw", FOLD_CASES)
def test_fold_partials_are_bounded(shape, window, kw):
    # Each block folds into the rows of the image its windows cover, and
    # nothing else: the slab is as tall as the window rows (plus the
    # window's extent) of the block, whatever the image's height; the sum
    # of the partials equals the single-process fold.
    img = np.random.default_rng(17).integers(0, 200, size=shape).astype(np.float64)
    R = single(img, window, dtype="float64", **kw)
    d = patchmap.describe(img, window, **kw)
    o, m = d["options"], d["matrix"]
    axis = 1 if o["channel_axis"] == 0 else 0
    inner = int(np.prod(m["out_shape"][1:])) if len(m["out_shape"]) > 1 else 1
    extent = (o["window"][0] - 1) * o["dilation"][0] + 1
    for br in (7, 100, R.shape[0]):
        for a in range(0, R.shape[0], br):
            b = min(a + br, R.shape[0])
            part = pmd._fold_block(R[a:b], a, b, shape, window, "sum", np.float64, kw, axis)
            # reference: the whole-image fold of these rows alone
            alone = patchmap.fold(R[a:b], shape, window, mode="sum", row_range=(a, b), **kw)
            covered = np.flatnonzero(patchmap.fold(np.ones((b - a, 1)), shape, window,
                                                   mode="count", row_range=(a, b), **kw)
                                     .sum(axis=tuple(i for i in range(len(shape)) if i != axis)))
            if part is None:
                assert covered.size == 0
                continue
            lo, slab = part
            windows_rows = (b - 1) // inner - a // inner + 1
            assert slab.shape[axis] <= (windows_rows - 1) * o["step"][0] + extent
            assert lo <= covered.min() and covered.max() < lo + slab.shape[axis]
            index = [slice(None)] * len(shape)
            index[axis] = slice(lo, lo + slab.shape[axis])
            assert np.array_equal(slab, alone[tuple(index)])
            rest = alone.copy()
            rest[tuple(index)] = 0
            assert not rest.any()
        X = pmd.windows(img, window, dtype="float64", block_rows=br, **kw)
        for mode in ("sum", "mean", "count"):
            got = pmd.fold(X, shape, window, mode=mode, **kw).compute(scheduler="synchronous")
            assert np.array_equal(got, patchmap.fold(R, shape, window, mode=mode, **kw)), mode


def test_fold_float_order():
    # Float data: a pixel covered by two blocks gets the sum of the two
    # blocks' sums; with one block the bits are the single process's.
    img = np.random.default_rng(19).random((60, 50))
    R = single(img, (6, 6), dtype="float64")
    want = patchmap.fold(R, img.shape, (6, 6))
    one = pmd.fold(pmd.windows(img, (6, 6), dtype="float64", block_rows=R.shape[0]),
                   img.shape, (6, 6)).compute(scheduler="synchronous")
    assert np.array_equal(one, want)
    X = pmd.windows(img, (6, 6), dtype="float64", block_rows=450)
    got = pmd.fold(X, img.shape, (6, 6)).compute(scheduler="synchronous")
    assert np.allclose(got, want, rtol=1e-13, atol=0)
    # 450 rows are 10 rows of windows: block i covers image rows 10i .. 10i+14,
    # the rows no two blocks share are the single process's bits
    H = img.shape[0]
    shared = set()
    for a in range(450, R.shape[0], 450):
        p = a // 45
        shared.update(range(p, p + 5))
    alone = [r for r in range(H) if r not in shared]
    assert np.array_equal(got[alone], want[alone])


def test_fold_bad_input():
    with pytest.raises(ValueError, match="layout"):
        pmd.fold(np.zeros((25, 16)), (8, 8), 4, layout="cols")
    with pytest.raises(ValueError, match="rows"):
        pmd.fold(np.zeros((24, 16)), (8, 8), 4)
    with pytest.raises(ValueError, match="mode"):
        pmd.fold(np.zeros((25, 16)), (8, 8), 4, mode="max")


def test_a_rewritten_source_is_read_again(tmp_path):
    # A worker keeps its sources open between graphs; a file saved again
    # under the same name must not be read through the old map.
    path = tmp_path / "img.npy"
    a = np.arange(30 * 20, dtype=np.uint8).reshape(30, 20)
    np.save(path, a)
    X = pmd.windows(str(path), (3, 3), block_rows=100, dtype="float64")
    assert X.sum().compute(scheduler="synchronous") == single(a, (3, 3), dtype="float64").sum()
    b = a[::-1].copy()
    np.save(tmp_path / "new.npy", b)  # replaced, as tools write: a new file, same name
    os.replace(tmp_path / "new.npy", path)
    X = pmd.windows(str(path), (3, 3), block_rows=100, dtype="float64")
    assert np.array_equal(X.compute(scheduler="synchronous"),
                          single(b, (3, 3), dtype="float64"))


def test_worker_budget_fits_its_limit(client, image):
    """Each block's budget fits its worker's memory_limit: the default is at
    most half of a task's share of what the limit leaves, a larger budget
    is refused on the worker naming the worker's limit."""
    path, img = image
    room = client.submit(pmd._worker_room, pure=False).result()
    share, address, limit, nthreads = room
    assert limit == WORKER_LIMIT and nthreads == 1 and 0 < share < WORKER_LIMIT, room
    fitted = client.submit(pmd._fit_options, {}, (16, 16), img.shape, img.dtype, 0, 100,
                           pure=False).result()
    assert 8 << 20 <= fitted["budget"] <= min(256 << 20, share // 2 + (1 << 20)), fitted
    X = pmd.windows(str(path), (16, 16), budget="2G", block_rows=2_000_000)
    with pytest.raises(patchmap.OutOfMemory,
                       match=r"the memory limit of the Dask worker .* \(768\.0 MiB, 1 task at "
                             r"once\) allows .* more per task; the budget asks (2\.0 GiB|.*)"):
        X[:10].compute()

    # the rule itself, on a worker of 300 MiB with 100 MiB left per task
    small = (100 << 20, "tcp://w:1", 300 << 20, 2)
    got = pmd._fit_options({}, (16, 16), img.shape, img.dtype, 0, 100, room=small)
    assert got["budget"] == 50 << 20
    got = pmd._fit_options({"chunk": "64M"}, (16, 16), img.shape, img.dtype, 0, 100,
                           room=small)
    assert got["budget"] == 128 << 20  # two chunks at least, as the library keeps
    with pytest.raises(patchmap.OutOfMemory, match=r"tcp://w:1 \(300\.0 MiB, 2 tasks at "
                                                   r"once\) allows 100\.0 MiB more per task; "
                                                   r"the budget asks 1\.0 GiB"):
        pmd._fit_options({"budget": "1G"}, (16, 16), img.shape, img.dtype, 0, 1 << 20,
                         room=small)
    # a block smaller than the budget is its own bound
    assert pmd._fit_options({"budget": "1G"}, (16, 16), img.shape, img.dtype, 0, 10,
                            room=small) == {"budget": "1G"}
    with pytest.raises(patchmap.OutOfMemory, match=r"backend eager would keep all"):
        pmd._fit_options({"backend": "eager"}, (16, 16), img.shape, img.dtype, 0, 200000,
                         room=small)
    assert pmd._fit_options({"backend": "eager"}, (16, 16), img.shape, img.dtype, 0, 100,
                            room=small) == {"backend": "eager"}
    # outside a worker: the options as given
    assert pmd._fit_options({}, (16, 16), img.shape, img.dtype, 0, 100) == {}


@pytest.mark.parametrize("backend", ["sigsegv", "uffd"])
def test_blocks_move_between_workers_on_every_backend(client, image, backend):
    """distributed sends a block through the kernel (socket.send), which
    cannot fault in the lazy pages of the SIGSEGV backend (nor of
    userfaultfd in user mode, an unprivileged user's): there a block is
    read into memory on its worker. Gathering every block to this process,
    and moving them between the workers for the concatenation, must finish
    (it retried for ever before) with the exact matrix."""
    path, img = image
    X = pmd.windows(str(path), (16, 16), budget=BUDGET, block_bytes="16M", backend=backend)
    got = client.compute(X[:300000]).result(timeout=120)
    assert type(got) is np.ndarray
    assert np.array_equal(got, single(img, (16, 16))[:300000])
    kernel_reads = client.submit(
        lambda: "uffd_full" in patchmap.stats(patchmap.windows(
            np.zeros((20, 20), np.uint8), 4, backend=backend)).mechanisms, pure=False).result()
    # on a worker whose kernel reads lazy pages a block stays lazy
    def kind():
        b = pmd._range_matrix(img, (16, 16), 0, 1000, {"backend": backend, "budget": BUDGET})
        try:
            return patchmap.stats(b).backend
        except TypeError:
            return "read into memory"
    assert client.submit(kind, pure=False).result(timeout=60) == \
        (backend if kernel_reads else "read into memory")
    # a block read into memory must fit the worker's share of its limit
    if not kernel_reads:
        big = pmd.windows(str(path), (16, 16), budget=BUDGET, block_rows=1_000_000,
                          backend=backend)
        with pytest.raises(patchmap.OutOfMemory,
                           match=r"the kernel cannot read the lazy pages here \(backend %s.*"
                                 r"the block of 976\.6 MiB is more than the .* per task that "
                                 r"the memory limit of the Dask worker .* \(768\.0 MiB, 1 "
                                 r"task at once\) allows" % backend):
            big.blocks[0].compute()


def test_blocks_move_from_a_worker_without_a_memory_limit(image):
    """A worker with no memory limit (memory_limit=0, a common setting)
    is a worker all the same: where its kernel cannot read lazy pages, a
    block is read into memory before distributed sends it (it was sent
    lazy, and the transfer retried for ever)."""
    from distributed import Client, LocalCluster

    path, img = image
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, memory_limit=0,
                      dashboard_address=":0") as cluster, Client(cluster) as c:
        X = pmd.windows(str(path), (16, 16), budget=BUDGET, block_bytes="16M",
                        backend="sigsegv")
        got = c.compute(X.blocks[1]).result(timeout=120)
        a, b = blocks_of(X)[1]
        assert type(got) is np.ndarray and np.array_equal(got, single(img, (16, 16))[a:b])
