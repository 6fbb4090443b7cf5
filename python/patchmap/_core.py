"""_core.py: numpy arrays over libpatchmap's virtual patch matrices.

A PatchMatrix owns one pm_matrix through a private _Mapping object. Every
array handed out is built from that object's __array_interface__, so numpy
records it as the array's base: the mapping (and the source image, which the
library reads on every fault) lives as long as any array or view over it, and
is closed when the last one is collected. PatchMatrix.close() closes it
early, but only when no array over it is left (else BufferError, as
mmap.mmap.close() does): a Python object can never point at unmapped memory.
"""

import ctypes
import dataclasses
import errno
import gc
import numbers
import operator
import re
import sys
import threading
import weakref

import numpy as np

from . import _image
from . import _lib as L
from . import _spec
from ._spec import parse_size

_INT_MAX = 2**31 - 1


# ------------------------------------------------------------ arguments


def _int(value, what, lo=0, hi=2**63 - 1):
    """An exact integer in [lo, hi]; rejects floats and bools."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError("%s must be an integer, not a bool" % what)
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError("%s must be an integer, not %r" % (what, value)) from None
    if not lo <= v <= hi:
        raise ValueError("%s must be between %d and %d, not %d" % (what, lo, hi, v))
    return v


def _source_array(image):
    """The source as an ndarray the library can read (numpy.asarray: not
    copied when it already is one), and its pm_source."""
    if isinstance(image, np.ma.MaskedArray):
        raise TypeError("patchmap: masked arrays are not supported (the mask would be "
                        "ignored); use image.filled(value) first")
    arr = np.asarray(image)
    code = _spec.source_dtype(arr.dtype)
    if arr.ndim == 0:
        raise ValueError("patchmap: the source must have at least one dimension")
    if arr.ndim > L.PM_MAX_DIMS:
        raise ValueError("patchmap: the source has %d dimensions; at most %d are supported"
                         % (arr.ndim, L.PM_MAX_DIMS))
    src = L.pm_source()
    src.data = arr.ctypes.data  # the element at index (0, ..., 0), whatever the strides
    src.dtype = code
    src.ndim = arr.ndim
    for i in range(arr.ndim):
        src.shape[i] = arr.shape[i]
        src.strides[i] = arr.strides[i]
    return arr, src


def _build_opts(who, image, window_shape, check_memory=True, want_info=False, select=None,
                **args):
    """The source array and pm_matrix_opts (and pm_matrix_info if want_info)
    for the arguments of windows(), through the library's pm_spec (`who`
    names the function in messages). With select (a dict of rows, mask,
    sample, random_state, row_range), the row selection comes after the
    options: (arr, o, sel[, info]), sel None or a (pm_rows, arrays kept
    alive, report) triple, info the selection's."""
    if select is not None and select.get("row_range") is not None:
        args["row_range"] = select["row_range"]
    arr, src = _source_array(image)
    affine = args.pop("affine", None)
    if affine is not None:
        if args.get("scale") is not None or args.get("offset") is not None:
            raise TypeError("%s: give affine=(scale, offset) or scale= and offset=, not both"
                            % who)
        if np.ndim(affine) != 1 or len(affine) != 2:
            raise TypeError("%s: affine must be a (scale, offset) pair, not %r" % (who, affine))
        args["scale"], args["offset"] = affine
    with _spec.Spec(who) as sp:
        sp.set("window_shape", window_shape)
        for name, value in args.items():
            if value is not None:
                sp.set(name, value)
        o, info = sp.matrix(src)
        flat = _spec.pad_text(args["padding"])[1] if args.get("padding") is not None else None
        if flat is not None and flat[0] != flat[1] and info.nspatial == 2:
            b, a = flat
            raise ValueError(
                "%s: padding=(%d, %d) is ambiguous on a 2-D window: numpy.pad reads it as "
                "%d before and %d after on both axes, ((%d, %d), (%d, %d)); PyTorch as %d on "
                "both sides of y and %d on both sides of x, ((%d, %d), (%d, %d)). Write the "
                "one you mean" % (who, b, a, b, a, b, a, b, a, b, a, b, b, a, a))
        sel = None
        if select is not None:
            from . import _subsets
            range_sel, rinfo = sp.rows(o)
            sel, info = _subsets.resolve(
                who, o, rinfo, rows=select.get("rows"), mask=select.get("mask"),
                sample=select.get("sample"), random_state=select.get("random_state"),
                range_sel=range_sel)
        elif args.get("row_range") is not None:
            raise TypeError("%s: row_range is a selection argument" % who)
        if check_memory:
            sp.check_memory(info)
    if select is not None:
        return (arr, o, sel, info) if want_info else (arr, o, sel)
    return (arr, o, info) if want_info else (arr, o)


# ---------------------------------------------------------------- owner


def _release(handle, source):
    """Closes a pm_matrix; run exactly once (weakref.finalize)."""
    del source  # kept alive until now: the library read it on every fault
    return L.lib().pm_matrix_close(handle)


class _Mapping:
    """Owns one pm_matrix. Arrays over the matrix are created from this
    object's __array_interface__ and keep it as their base."""

    __slots__ = ("_handle", "_interface", "_finalizer", "info", "source", "__weakref__")

    def __init__(self, handle, interface, source, info):
        self._handle = handle
        self._interface = interface
        self.info = info
        self.source = source  # the image the library reads on every fault
        self._finalizer = weakref.finalize(self, _release, handle, source)
        # At interpreter exit, leave the mapping to the OS: an object torn
        # down later might still read an array over it.
        self._finalizer.atexit = False

    @property
    def alive(self):
        return self._finalizer.alive

    @property
    def __array_interface__(self):
        if self._interface is None:
            raise ValueError("patchmap: this matrix has no mapping (backend \"none\"); "
                             "use PatchMatrix.read()")
        if not self._finalizer.alive:
            raise ValueError("patchmap: the matrix is closed")
        return self._interface

    def handle(self):
        if not self._finalizer.alive:
            raise ValueError("patchmap: the matrix is closed")
        return self._handle


# ---------------------------------------------------------------- stats


@dataclasses.dataclass(frozen=True)
class Stats:
    """What happened so far to a matrix's lazy memory (struct pm_stats).

    Attributes: backend (in force: uffd, sigsegv, eager, none); mechanisms
    (how it works here, e.g. ("uffd_full", "move", ...)) and mechanism (the
    same as PM_MECH_* bits); chunk_bytes; budget_bytes (as enforced, whole
    chunks); faults (first touches of absent chunks); chunks_filled (fills
    run, faults and read-ahead); bytes_filled; evictions; readahead_fills
    and readahead_hits (chunks filled ahead, and of those the ones later
    touched); fill_errors; resident_bytes (now); peak_resident_bytes;
    fill_seconds (time spent computing chunks); memory_available (what the
    process could still take at open, patchmap.memory_available(); None if
    unknown); budget_lowered (the default budget was cut to half of it)."""

    backend: str                 # the backend in force: uffd, sigsegv, eager, none
    mechanisms: tuple            # how it works here, e.g. ("uffd_full", "move", ...)
    mechanism: int               # the same, as PM_MECH_* bits
    chunk_bytes: int
    budget_bytes: int            # as enforced: whole chunks
    faults: int                  # first touches of absent chunks
    chunks_filled: int           # fills run (faults and read-ahead)
    bytes_filled: int
    evictions: int
    readahead_fills: int
    readahead_hits: int
    fill_errors: int
    resident_bytes: int          # now
    peak_resident_bytes: int
    fill_seconds: float          # time spent computing chunks
    memory_available: int        # what the process could still take at open
                                 # (patchmap.memory_available()); None: unknown
    budget_lowered: bool         # the default budget was cut to half of it

    def asdict(self):
        """The counters as a dict, field name to value."""
        return dataclasses.asdict(self)


def _stats_from(st):
    backend = L.lib().pm_backend_name(st.backend)
    return Stats(
        backend=backend.decode() if backend else str(st.backend),
        mechanisms=tuple(k for k, bit in L.MECHANISMS.items() if st.mechanism & bit),
        mechanism=st.mechanism,
        chunk_bytes=st.chunk_bytes,
        budget_bytes=st.budget_bytes,
        faults=st.faults,
        chunks_filled=st.chunks_filled,
        bytes_filled=st.bytes_filled,
        evictions=st.evictions,
        readahead_fills=st.readahead_fills,
        readahead_hits=st.readahead_hits,
        fill_errors=st.fill_errors,
        resident_bytes=st.resident_bytes,
        peak_resident_bytes=st.peak_resident_bytes,
        fill_seconds=st.fill_ns / 1e9,
        memory_available=None if st.memory_available == 2**64 - 1 else st.memory_available,
        budget_lowered=bool(st.budget_lowered),
    )


def _owner_of(obj):
    """The _Mapping under a PatchMatrix, or under an array / view over one."""
    if isinstance(obj, PatchMatrix):
        return obj._live_owner()
    if isinstance(obj, _Mapping):
        return obj
    base = obj
    while base is not None:
        if isinstance(base, _Mapping):
            return base
        # ndarray.base, or memoryview.obj for an array made from a memoryview
        base = base.base if isinstance(base, np.ndarray) else getattr(base, "obj", None)
    raise TypeError("patchmap: %r is not an array over a patch matrix" % type(obj).__name__)


def _row_indices(indices, n):
    """The rows as a flat int64 array, and the shape numpy.take gives them
    (the indices' own shape: a scalar picks one row)."""
    idx = np.asarray(indices)
    if idx.dtype == np.bool_:
        if idx.shape != (n,):
            raise IndexError("boolean row mask of shape %s for %d rows" % (idx.shape, n))
        rows = np.flatnonzero(idx)
        return rows, rows.shape
    if idx.dtype.kind not in "iu" and idx.size:
        raise TypeError("row indices must be integers or a boolean mask, not %s" % idx.dtype)
    shape = idx.shape
    # An unsigned index past int64 would wrap to a negative one (and count
    # from the end): refuse it before the cast.
    if idx.dtype.kind == "u" and idx.size and idx.max() >= n:
        raise IndexError("row index %d out of range for %d rows" % (idx.max(), n))
    idx = idx.astype(np.int64).reshape(-1)
    idx = np.where(idx < 0, idx + n, idx)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise IndexError("row index out of range for %d rows" % n)
    return idx, shape


def _guarded(owner):
    """pm_matrix_read and pm_matrix_write for the matrix of owner, as
    _image.guarded gives them: over an imread image, a part that fails to
    decode is an ImageError here, not a SIGBUS."""
    if not isinstance(owner, _Mapping):
        return L.lib().pm_matrix_read, L.lib().pm_matrix_write, None
    return _image.guarded(owner.source)


def _read_into(owner, first, count, out, at=0):
    """Stored rows [first, first + count) via one pm_matrix_read into rows
    [at, at + count) of out, an array of the matrix's dtype and ld columns.
    Over an imread image, a part that fails to decode is an ImageError."""
    rb = out.strides[0]
    read, _, img = _guarded(owner)
    err = read(owner.handle(), first * rb, out.ctypes.data + at * rb, count * rb)
    if err == -errno.EIO and img is not None:
        raise _image.decode_error(img, "patchmap: reading the matrix")
    L.check(err)


def _read_rows(owner, rows, shape):
    """Stored rows `rows` (valid indices) of the matrix via pm_matrix_read,
    one call per run of consecutive rows, as an array of shape + (cols,)."""
    info = owner.info
    ld, cols = info["ld"], info["cols"]
    out = np.empty((len(rows), ld), dtype=info["dtype"])
    starts = np.flatnonzero(np.diff(rows, prepend=-2) != 1) if len(rows) else []
    ends = list(starts[1:]) + [len(rows)]
    for a, b in zip(starts, ends):
        _read_into(owner, int(rows[a]), int(b - a), out, int(a))
    return (out[:, :cols] if ld != cols else out).reshape(tuple(shape) + (cols,))


def _read_range(owner, first, count):
    """Stored rows [first, first + count) via one pm_matrix_read: as
    _read_rows(owner, numpy.arange(first, first + count), (count,))."""
    info = owner.info
    out = np.empty((count, info["ld"]), dtype=info["dtype"])
    _read_into(owner, first, count, out)
    return out[:, :info["cols"]] if info["ld"] != info["cols"] else out


def take(X, indices):
    """numpy.take(X, indices, axis=0), computed straight from the source:
    sampling scattered rows (to fit a model, say) then costs those rows
    only, where X[indices] would fill a whole chunk per row.

    X: an array returned by windows(), a row slice X[a:b:k] of one, or a
        PatchMatrix.
    indices: row numbers (an int, or ints of any shape, negative from the
        end) or a boolean mask of one entry per row of X.
    """
    if isinstance(X, PatchMatrix):
        return X.take(indices)
    owner, first, count, stride = _row_selection(X, "patchmap.take", "X[indices]")
    idx, shape = _row_indices(indices, count)
    return _read_rows(owner, first + idx * stride, shape)


def blocks(X, block_rows=None, block_bytes="1M", threads=2):
    """Consecutive row blocks of X, each a new ordinary array (writable,
    C-contiguous, yours to keep), computed straight from the source by the
    library (pm_matrix_read) into that array: the mapping is never touched,
    so there are no faults, nothing counts against the budget, and a
    PatchMatrix with backend="none" streams too. While you work on one
    block, up to `threads` threads compute the next ones: at most
    threads blocks are being computed besides the ones you hold (your
    loop's variable holds the last one until it moves on). The way to feed
    a matrix to partial_fit, or to anything that takes it a block at a
    time.

    X: an array returned by windows() or extract_patches_2d(), a row slice
        X[a:b] or X[a:b:k] of one, or a PatchMatrix. Any other 2-D array
        yields its row slices X[a:b] (views, not copies).
    block_rows: rows per block (the last may be shorter); default: as many
        as fit block_bytes.
    block_bytes: the bytes of a block when block_rows is None (an int or a
        size text such as "1M"); default "1M", which a core's cache holds.
    threads: threads computing blocks ahead (1 to 64); default 2.

    A block that fails to compute (a damaged image under the matrix:
    patchmap.ImageError) raises when the iteration reaches it. Leaving the
    loop early waits for the blocks being computed and drops them.
    """
    first, stride = 0, 1
    if isinstance(X, PatchMatrix):
        owner = X._live_owner()
        n, row = X.shape[0], X.shape[1] * X.dtype.itemsize
    else:
        try:
            owner, first, n, stride = _row_selection(X, "patchmap.blocks",
                                                     "numpy.ascontiguousarray(X)")
        except TypeError:  # not over a matrix: an ordinary array
            owner = None
            X = np.asarray(X)
            if X.ndim != 2:
                raise ValueError("patchmap.blocks: X must be 2-D, not %d-D" % X.ndim)
            n = X.shape[0]
        row = X.shape[1] * X.itemsize
    if block_rows is None:
        block_rows = max(1, parse_size(block_bytes, "block_bytes") // max(1, row))
    block_rows = _int(block_rows, "block_rows", 1)
    threads = _int(threads, "threads", 1, 64)
    return _blocks(X, owner, first, stride, n, block_rows, threads)


def _blocks(X, owner, first, stride, n, block_rows, threads):
    if owner is None:
        for a in range(0, n, block_rows):
            yield X[a:a + block_rows]
        return
    import concurrent.futures as cf
    starts = range(0, n, block_rows)
    if stride == 1:  # one call per block
        read = lambda a: _read_range(owner, first + a, min(n - a, block_rows))
    else:
        read = lambda a: _read_rows(owner, first + stride * np.arange(a, min(n, a + block_rows)),
                                    (min(n, a + block_rows) - a,))
    if owner.info["ld"] != owner.info["cols"]:
        # stored rows padded to row_pitch: the read leaves a view that skips
        # the padding; a block is C-contiguous, so copy the rows together
        padded = read
        read = lambda a: np.ascontiguousarray(padded(a))
    pool = cf.ThreadPoolExecutor(threads, thread_name_prefix="patchmap-blocks")
    pending = []
    try:
        it = iter(starts)
        for a in it:
            pending.append(pool.submit(read, a))
            if len(pending) == threads:
                break
        while pending:
            block = pending.pop(0).result()
            a = next(it, None)
            if a is not None:
                pending.append(pool.submit(read, a))
            yield block
    finally:
        for f in pending:
            f.cancel()
        pool.shutdown(wait=True)


def _row_selection(X, who, other):
    """(owner, first row, row count, row stride) of X, an array over a matrix
    that holds whole rows of it (X or X[a:b:k]); ValueError otherwise."""
    owner = _owner_of(X)
    info = owner.info
    X = np.asarray(X)
    pitch = info["ld"] * info["dtype"].itemsize
    iface = owner.__array_interface__
    off = X.__array_interface__["data"][0] - iface["data"][0]
    if (X.ndim != 2 or X.dtype != info["dtype"] or X.shape[1] != info["cols"]
            or (X.strides[1] != X.itemsize and X.shape[1] > 1) or off % pitch
            or X.strides[0] % pitch):
        raise ValueError("%s: X must be whole rows of the matrix (X or X[a:b:k]); "
                         "for other views use %s" % (who, other))
    return owner, off // pitch, X.shape[0], X.strides[0] // pitch


def info(obj):
    """The matrix's geometry as a dict: rows, cols, ld (elements from one
    stored row to the next), elem_size, bytes, dtype, out_shape (window
    positions per spatial axis), windows, window_elems, channels.

    obj: a PatchMatrix, or an array returned by windows() or any view of it.
    """
    if isinstance(obj, PatchMatrix):
        return dict(obj.info)
    return dict(_owner_of(obj).info)


def stats(obj):
    """What happened so far to the matrix's lazy memory, as a Stats.

    obj: a PatchMatrix, or an array returned by windows() or any view of it.
    """
    st = L.pm_stats()
    L.check(L.lib().pm_matrix_stats(_owner_of(obj).handle(), ctypes.byref(st)))
    return _stats_from(st)


# ---------------------------------------------------------------- handle


class PatchMatrix:
    """A virtual patch matrix: see open(). Use .array (or numpy.asarray(m))
    for the read-only ndarray over it; close() or a with-block frees it."""

    def __init__(self, image, window_shape, step=None, dilation=None, padding=None, *,
                 pad_mode=None, pad_value=None, channel_axis=None, dtype=None, order=None,
                 layout=None, row_pitch=None, scale=None, offset=None, affine=None,
                 backend=None, budget=None, chunk=None, threads=None, readahead=None,
                 writable=None, rows=None, mask=None, sample=None, random_state=None,
                 row_range=None):
        src, o, sel = _build_opts(
            "patchmap.PatchMatrix", image, window_shape,
            select=dict(rows=rows, mask=mask, sample=sample, random_state=random_state,
                        row_range=row_range), step=step, dilation=dilation,
            padding=padding, pad_mode=pad_mode, pad_value=pad_value,
            channel_axis=channel_axis, dtype=dtype, order=order, layout=layout,
            row_pitch=row_pitch, scale=scale, offset=offset, affine=affine, backend=backend,
            budget=budget, chunk=chunk, threads=threads, readahead=readahead,
            writable=writable)
        self._setup(src, o, sel[:2] if sel else None)

    def __reduce__(self):
        raise TypeError("a patchmap.PatchMatrix cannot be pickled or copied: it holds a "
                        "mapping of this process; pickle its array (which materializes "
                        "the matrix), or open it again from the same arguments")

    @classmethod
    def _from_opts(cls, src, o, rows=None):
        m = cls.__new__(cls)
        m._setup(src, o, rows)
        return m

    def _setup(self, src, o, rows=None):
        # rows: a pm_rows (patchmap._subsets), copied by the library at open.
        self._lock = threading.Lock()
        self._owner = None
        self._final_stats = None
        lib = L.lib()
        info = L.pm_matrix_info()
        h = ctypes.c_void_p()
        if rows is None:
            L.check(lib.pm_matrix_describe(ctypes.byref(o), ctypes.byref(info)))
            L.check(lib.pm_matrix_open(ctypes.byref(o), ctypes.byref(h)))
        else:
            from . import _subsets
            _subsets.describe_open(o, rows, info, h)
        try:
            self.dtype = _spec.numpy_dtype(info.dtype)
            self.shape = (info.rows, info.cols)
            self.nbytes = info.bytes
            self.info = {
                "rows": info.rows, "cols": info.cols, "ld": info.ld,
                "elem_size": info.elem_size, "bytes": info.bytes, "dtype": self.dtype,
                "out_shape": tuple(info.out_shape[: info.nspatial]),
                "windows": info.windows, "window_elems": info.window_elems,
                "channels": info.channels,
            }
            data = lib.pm_matrix_data(h)
            interface = None
            if data:
                pitch = info.ld * info.elem_size
                interface = {
                    "version": 3,
                    "shape": self.shape,
                    "typestr": self.dtype.str,
                    "data": (data, True),  # read-only
                    "strides": None if info.ld == info.cols else (pitch, info.elem_size),
                }
        except BaseException:
            lib.pm_matrix_close(h)
            raise
        self._owner = _Mapping(h.value, interface, src, self.info)
        self._baseline = self._owner_refs()

    def _owner_refs(self):
        # Always measured through this one call, so that the interpreter's
        # own temporary references are the same at baseline and at close.
        return sys.getrefcount(self._owner)

    def _live_owner(self):
        owner = self._owner
        if owner is None or not owner.alive:
            raise ValueError("patchmap: the matrix is closed")
        return owner

    @property
    def closed(self):
        return self._owner is None or not self._owner.alive

    @property
    def backend(self):
        return self.stats().backend

    @property
    def array(self):
        """A read-only, C-contiguous (unless row_pitch pads rows) ndarray
        over the matrix: a new array object each time, always the same
        memory. It keeps the mapping alive."""
        with self._lock:
            return np.asarray(self._live_owner())

    def __array__(self, dtype=None, copy=None):
        a = self.array
        if copy:
            return np.array(a, dtype=dtype, copy=True)
        if dtype is not None and np.dtype(dtype) != a.dtype:
            if copy is False:
                raise ValueError("patchmap: a %s matrix cannot be seen as %s without a copy"
                                 % (a.dtype, np.dtype(dtype)))
            return a.astype(dtype)
        return a

    def stats(self):
        """Stats (see Stats); after close(), the last figures."""
        with self._lock:
            if self.closed and self._final_stats is not None:
                return self._final_stats
            return stats(self._live_owner())

    def read(self, start=0, stop=None):
        """Rows [start, stop) of the stored matrix, computed straight into a
        new (ordinary, writable) array without touching the mapping: works
        with backend="none", and wherever a page fault is not wanted.

        start: the first row (negative: from the end); default 0.
        stop: one past the last row (negative: from the end); default the
            number of rows.
        """
        start, stop, _ = slice(start, stop).indices(self.shape[0])
        with self._lock:
            rows = np.arange(start, max(stop, start))
            return _read_rows(self._live_owner(), rows, rows.shape)

    def take(self, indices):
        """numpy.take(self.array, indices, axis=0), computed straight into a
        new array: no chunk is faulted in for a few scattered rows.

        indices: row numbers (an int, or ints of any shape, negative from the
            end) or a boolean mask of one entry per row.
        """
        with self._lock:
            owner = self._live_owner()
            return _read_rows(owner, *_row_indices(indices, self.shape[0]))

    def close(self):
        """Frees the mapping now (takes no argument). Refused with
        BufferError while any array (or view) over it is alive, or a
        patchmap.blocks() iteration of it is unfinished: delete those
        first (or close the iteration). Idempotent."""
        with self._lock:
            if self.closed:
                return
            # No local reference to the owner before this count.
            if self._owner_refs() != self._baseline:
                gc.collect()  # arrays kept only by garbage cycles
            if self._owner_refs() > self._baseline:
                raise BufferError("patchmap: cannot close the matrix while arrays over it are "
                                  "alive (delete them and their views first) or a "
                                  "patchmap.blocks() iteration of it is unfinished (finish "
                                  "or close it)")
            owner = self._owner
            st = L.pm_stats()
            if L.lib().pm_matrix_stats(owner.handle(), ctypes.byref(st)) == 0:
                self._final_stats = _stats_from(st)
            err = owner._finalizer()
            self._owner = None
        if err:
            raise L.error_for(err, "a chunk fill failed")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = "closed" if self.closed else "open"
        return "<patchmap.PatchMatrix %d x %d %s, %.1f MiB, %s>" % (
            self.shape[0], self.shape[1], self.dtype, self.nbytes / 2**20, state)


def open_matrix(image, window_shape, step=None, dilation=None, padding=None, *,
                pad_mode=None, pad_value=None, channel_axis=None, dtype=None, order=None,
                layout=None, row_pitch=None, scale=None, offset=None, affine=None,
                backend=None, budget=None, chunk=None, threads=None, readahead=None,
                writable=None, rows=None, mask=None, sample=None, random_state=None,
                row_range=None):
    src, o, sel = _build_opts(
        "patchmap.open", image, window_shape,
        select=dict(rows=rows, mask=mask, sample=sample, random_state=random_state,
                    row_range=row_range), step=step, dilation=dilation, padding=padding,
        pad_mode=pad_mode, pad_value=pad_value, channel_axis=channel_axis, dtype=dtype,
        order=order, layout=layout, row_pitch=row_pitch, scale=scale, offset=offset,
        affine=affine, backend=backend, budget=budget, chunk=chunk, threads=threads,
        readahead=readahead, writable=writable)
    return PatchMatrix._from_opts(src, o, sel[:2] if sel else None)


def windows(image, window_shape, step=None, dilation=None, padding=None, *, pad_mode=None,
            pad_value=None, channel_axis=None, dtype=None, order=None, layout=None,
            row_pitch=None, scale=None, offset=None, affine=None, backend=None, budget=None,
            chunk=None, threads=None, readahead=None, writable=None, rows=None, mask=None,
            sample=None, random_state=None, row_range=None):
    src, o, sel = _build_opts(
        "patchmap.windows", image, window_shape,
        select=dict(rows=rows, mask=mask, sample=sample, random_state=random_state,
                    row_range=row_range), step=step, dilation=dilation,
        padding=padding, pad_mode=pad_mode, pad_value=pad_value, channel_axis=channel_axis,
        dtype=dtype, order=order, layout=layout, row_pitch=row_pitch, scale=scale,
        offset=offset, affine=affine, backend=backend, budget=budget, chunk=chunk,
        threads=threads, readahead=readahead, writable=writable)
    if o.lazy.backend == L.PM_BACKEND_NONE:
        raise ValueError("patchmap.windows(backend=%r): backend none has no mapping to return; "
                         "use patchmap.open(...).read() or patchmap.save()" % (backend,))
    return PatchMatrix._from_opts(src, o, sel[:2] if sel else None).array


def describe(image, window_shape, step=None, dilation=None, padding=None, *, pad_mode=None,
             pad_value=None, channel_axis=None, dtype=None, order=None, layout=None,
             row_pitch=None, scale=None, offset=None, affine=None, backend=None, budget=None,
             chunk=None, threads=None, readahead=None, writable=None, rows=None, mask=None,
             sample=None, random_state=None, row_range=None):
    if sample is not None:
        # the draw on a copy of the generator: describing opens nothing and
        # leaves a RandomState (or numpy's global one) where it was
        from . import _subsets
        rs = _subsets.check_random_state(random_state)
        random_state = np.random.RandomState()
        random_state.set_state(rs.get_state())
    _, o, sel, info = _build_opts(
        "patchmap.describe", image, window_shape, check_memory=False, want_info=True,
        select=dict(rows=rows, mask=mask, sample=sample, random_state=random_state,
                    row_range=row_range), step=step,
        dilation=dilation, padding=padding, pad_mode=pad_mode, pad_value=pad_value,
        channel_axis=channel_axis, dtype=dtype, order=order, layout=layout,
        row_pitch=row_pitch, scale=scale, offset=offset, affine=affine, backend=backend,
        budget=budget, chunk=chunk, threads=threads, readahead=readahead, writable=writable)
    lib = L.lib()
    ns = info.nspatial
    w = [o.window[i] for i in range(ns)]
    lz = o.lazy
    options = {
        "window": [x.size for x in w], "step": [x.step for x in w],
        "dilation": [x.dilation for x in w], "pad_before": [x.pad_before for x in w],
        "pad_after": [x.pad_after for x in w],
        "pad_mode": lib.pm_pad_mode_name(o.pad_mode).decode(), "pad_value": o.pad_value,
        "channel_axis": o.source.channel_axis if o.source.has_channels else None,
        "dtype": lib.pm_dtype_name(info.dtype).decode(), "affine": bool(o.affine),
        "scale": o.scale if o.affine else 1.0, "offset": o.offset if o.affine else 0.0,
        "order": lib.pm_order_name(o.order).decode(),
        "layout": lib.pm_layout_name(o.layout).decode(), "row_pitch": o.row_pitch,
        "backend": lib.pm_backend_name(lz.backend).decode(),
        "budget": ("unlimited" if lz.budget == L.PM_BUDGET_UNLIMITED else lz.budget or None),
        "chunk": lz.chunk or None, "threads": lz.threads or None,
        "readahead": (max(lz.readahead, 0) if lz.readahead else None),
        "writable": bool(lz.flags & L.PM_LAZY_WRITABLE),
    }
    matrix = {
        "rows": info.rows, "cols": info.cols, "ld": info.ld,
        "dtype": lib.pm_dtype_name(info.dtype).decode(), "elem_size": info.elem_size,
        "bytes": info.bytes, "out_shape": list(info.out_shape[:ns]), "windows": info.windows,
        "window_elems": info.window_elems, "channels": info.channels,
    }
    return {"options": options, "matrix": matrix,
            "rows": sel[2] if sel else {"kind": "all"}}


def blockwise(func, X, block_rows=None, block_bytes="64M"):
    """func(X[a:b]) over consecutive row blocks of X, the results stacked
    along axis 0 into one array. Slices of the virtual array are views (no
    copy); this only bounds the temporaries func makes per block
    (scikit-learn's decision_function, say).

    func: called with each block, returns an array-like whose first axis
        has one entry per row of the block.
    X: any 2-D array, usually one returned by windows().
    block_rows: rows per block; default: as many as fit block_bytes.
    block_bytes: the bytes of X per block when block_rows is None (an int
        or a size text such as "64M"); default "64M".
    """
    n = X.shape[0]
    if block_rows is None:
        row = max(1, X.strides[0] if X.ndim > 1 else X.itemsize)
        block_rows = max(1, parse_size(block_bytes, "block_bytes") // row)
    block_rows = _int(block_rows, "block_rows", 1)
    out = None
    for a in range(0, n, block_rows):
        b = min(n, a + block_rows)
        r = np.asarray(func(X[a:b]))
        if out is None:
            out = np.empty((n,) + r.shape[1:], dtype=r.dtype)
        out[a:b] = r
    if out is None:
        out = np.asarray(func(X[:0]))
    return out


__all__ = ["windows", "describe", "open_matrix", "PatchMatrix", "Stats", "stats", "info", "take",
           "blockwise", "blocks",
           "parse_size"]


_ARGUMENTS = """
    image: the source, any array-like (numpy.asarray is applied: lists,
        memmaps, other arrays; an ndarray is not copied and the matrix keeps
        a reference to it): 1 to 8 dimensions of bool, uint8, int8, uint16,
        int16, uint32, int32, uint64, int64, float16, float32 or float64 in
        native byte order, any strides. Other dtypes (complex, object,
        strings, byte-swapped) raise TypeError.
    window_shape: the window, an int (every spatial axis) or one int per
        spatial axis.
    step: the distance between window positions, an int or one per spatial
        axis; default 1.
    dilation: the distance between a window's samples, an int or one per
        spatial axis; default 1.
    padding: None or "valid" (none, the default); "same" (TensorFlow's:
        ceil(n / step) windows per axis, the odd sample after); or
        numpy.pad's pad_width: an int (every side), a (before, after) pair
        (every spatial axis), or one pair per spatial axis. A pair on a 2-D
        window that PyTorch would read as (y, x) instead is refused when the
        two readings differ: write ((1, 1), (2, 2)) or ((1, 2), (1, 2)).
    pad_mode: "zero" (the default), "constant", "edge", "reflect",
        "symmetric" or "wrap", as numpy.pad's modes ("wrap" stays periodic
        for pads longer than the axis). pad_mode or pad_value without
        padding means padding="same".
    pad_value: the value of pad_mode="constant", in source units
        (representable in the source dtype); default 0.
    channel_axis: the axis holding channels, neither windowed nor padded.
        None (auto, the default): with a window of w sizes for an n-D
        image, w == n means no channels and w == n - 1 channels last; an int
        window_shape means no channels up to 2-D and channels last from 3-D
        (an (H, W, 3) image with window 2 gives 2 x 2 x 3 windows, as
        scikit-learn's extract_patches_2d). Or "none", "first", "last", an
        int axis (negative from the end).
    dtype: the matrix's dtype: float32 (the default), float64, or "same"
        (the source's own); a numpy dtype, type or name.
    order: the columns' order: "window" (the default: y, x, c, as
        sliding_window_view(image, window_shape).reshape(n, -1) and
        extract_patches_2d) or "channel" (c, y, x, as
        torch.nn.functional.unfold and sliding_window_view(image,
        window_shape, axis=spatial axes).reshape(n, -1)).
    layout: "rows" (the default: one row per window) or "cols" (the
        transpose, one column per window, as torch's unfold).
    row_pitch: bytes from one stored row to the next, a multiple of the
        element size and at least a row; default packed. The gap reads as
        zeros and the array is then not C-contiguous.
    scale, offset: each sample becomes x * scale + offset, computed in the
        output dtype as numpy computes x.astype(dtype) * dtype(scale) +
        dtype(offset) (float dtypes only); defaults 1 and 0.
    affine: (scale, offset) in one argument; not with scale or offset.
    backend: "auto" (the default: the PATCHMAP_BACKEND environment variable
        if set, else userfaultfd where it works, else sigsegv), "uffd",
        "sigsegv" or "eager" (computed at once into ordinary memory);
        open() also takes "none" (no mapping: read(), take() and save()
        only).
    budget: the most bytes resident at once: an int or a size text such as
        "256M", "1.5G", "64 KiB" (powers of 1024), or "unlimited"; default
        the library's (256 MiB). At least two chunks.
    chunk: bytes filled per fault, a power of two, at least a page (an int
        or a size text); default the library's (4 MiB).
    threads: filler threads; default the library's (half the CPUs, 2 to 8;
        1 on a single CPU, or under a budget of fewer than 32 chunks).
    readahead: chunks filled ahead of a sequential reader (0: none);
        default the library's.
    writable: True leaves resident pages writable at the kernel level (uffd
        backend, faster; the ndarray stays read-only); default False.

    Every argument but image and window_shape may also be given as the text
    the patchmap tool and descriptors take ("16x16", "1x2,3x4", "float32").
    Defaults not given here are the library's.

    Raises TypeError for an argument of the wrong type (and for a keyword
    this function does not take), patchmap.InvalidArgument (a ValueError)
    for a value the library refuses, with its message naming the argument,
    and patchmap.OutOfMemory (a MemoryError) when backend="eager" or an
    unlimited budget would hold more than the memory available, or the
    address space runs out; patchmap.SystemCallError (an OSError) for other
    system errors.
"""


_SELECTION = """
    Some of the windows (at most one of these; every window by default):
    row_range: (begin, end), a slice or "A:B": windows begin to end - 1
        (the grammar's row_range key).
    rows: integer window numbers, any shape (read in C order), any order,
        repeats allowed: row i is window rows.flat[i]. Copied.
    mask: a bool array of the windows' out_shape: the windows where it is
        True, in order. Copied.
    sample, random_state: `sample` windows (an int; a float in (0, 1): that
        fraction of the windows, rounded down) drawn with replacement as
        scikit-learn's extract_patches_2d(max_patches=sample,
        random_state=random_state) draws them (sklearn.utils'
        check_random_state, then one RandomState.randint per spatial axis
        over its window count, in axis order), so that with the image,
        window and seed of an extract_patches_2d call the matrix equals its
        patches reshaped to 2-D, bit for bit. A sample larger than the
        windows is refused (scikit-learn then returns all of them in random
        order; patchmap.extract_patches_2d does that too).
"""

windows.__doc__ = """The patch matrix of `image` as a read-only 2-D ndarray, never
    materialized: row r is window r (window positions in row-major order, as
    sliding_window_view(image, window_shape)[::step] numbers them), its
    columns the window's samples converted to `dtype`. The matrix is
    computed lazily, chunk by chunk, and lives as long as the returned
    array or any view of it.
""" + _SELECTION + _ARGUMENTS

describe.__doc__ = """What windows() would make of these arguments, without opening
    anything: {"options": the resolved options (window, step, dilation,
    pad_before, pad_after per spatial axis, pad_mode, pad_value,
    channel_axis, dtype, affine, scale, offset, order, layout, row_pitch,
    backend, budget, chunk, threads, readahead, writable; None where the
    library's default applies), "matrix": rows, cols, ld, dtype, elem_size,
    bytes, out_shape, windows, window_elems, channels, "rows": the row
    selection: kind (all, range, index, mask, sample), begin and end of a
    range, count and checksum (the sum of (i + 1) * window(i) mod 2**64) of
    the others}, the same objects as `patchmap info --json` prints. Takes
    windows()'s selection arguments `rows`, `mask`, `sample`, `random_state`
    and `row_range` too. The memory policy is not applied.
""" + _ARGUMENTS

open_matrix.__doc__ = """A PatchMatrix handle over the patch matrix of `image` (patchmap.open is
    the same function): .array, .read(), .take(), .stats(), .info, and
    close() or a with-block to free the mapping at a known point. Takes
    every argument of windows(), and backend="none".
""" + _SELECTION + _ARGUMENTS

PatchMatrix.__init__.__doc__ = """A handle over the patch matrix of `image`, as open() returns.
""" + _SELECTION + _ARGUMENTS
