"""_save.py: patchmap.save(), a patch matrix to a .npy file through the
library's pm_matrix_write / pm_matrix_read, never through the mapping: a
kernel access of an absent page fails (EFAULT) under user-mode-only
userfaultfd and the SIGSEGV backend, which is what numpy.save(X) and
X.tofile() do."""

import errno
import io
import os
import secrets
import stat

import numpy as np
from numpy.lib import format as npy_format

from . import _core
from . import _image
from . import _lib as L

_BLOCK = 64 << 20  # bytes per library call: Ctrl-C is seen between blocks


def _mapped_files(data, lo, hi):
    """(st_dev, st_ino) of every file mapped over the address range [lo, hi)
    of this process (/proc/self/maps)."""
    found = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) < 5 or parts[4] == "0":
                    continue
                start, end = (int(v, 16) for v in parts[0].split("-"))
                if start < hi and lo < end:
                    major, minor = (int(v, 16) for v in parts[3].split(":"))
                    found.add((os.makedev(major, minor), int(parts[4])))
    except OSError:
        pass
    return found


def _source_files(owner):
    """The files the matrix's source image is mapped from (np.load with
    mmap_mode, numpy.memmap, mmap) or decoded from (imread, which reads
    the file, not a mapping of it), as (st_dev, st_ino) pairs."""
    src = owner.source
    if src is None or src.size == 0:
        return set()
    img = _image.guarded(src)[2]
    if img is not None:
        return {img.info["file_id"]} if img.info.get("file_id") else set()
    base = src.__array_interface__["data"][0]
    lo = hi = base
    for n, st in zip(src.shape, src.strides):
        reach = (n - 1) * st
        lo, hi = (lo + reach, hi) if reach < 0 else (lo, hi + reach)
    return _mapped_files(base, lo, hi + src.itemsize)


def _header(dtype, shape):
    """The .npy header numpy.save writes for a C-ordered array."""
    buf = io.BytesIO()
    d = {"descr": npy_format.dtype_to_descr(dtype), "fortran_order": False,
         "shape": tuple(int(n) for n in shape)}
    try:
        npy_format.write_array_header_1_0(buf, d)
    except ValueError:  # a header above 64 KiB: format 2.0, as numpy.save
        buf = io.BytesIO()
        npy_format.write_array_header_2_0(buf, d)
    return buf.getvalue()


def _write_body(owner, fd, first, count, stride, path):
    """Rows first, first + stride, ... (count of them), columns 0..cols-1,
    to fd at its position."""
    info = owner.info
    item = info["dtype"].itemsize
    pitch = info["ld"] * item
    if count == 0:
        return
    _, write, img = _core._guarded(owner)
    if stride == 1 and info["ld"] == info["cols"]:
        offset, left = first * pitch, count * pitch
        while left:
            n = min(left, _BLOCK)
            err = write(owner.handle(), fd, offset, n)
            if err == -errno.EIO and img is not None:
                raise _image.decode_error(img, "patchmap.save")
            if err < 0:
                _raise(err, path)
            offset += n
            left -= n
        return
    rows_per = max(1, _BLOCK // pitch)
    for a in range(0, count, rows_per):
        rows = first + stride * np.arange(a, min(count, a + rows_per), dtype=np.int64)
        block = _core._read_rows(owner, rows, rows.shape)
        data = memoryview(np.ascontiguousarray(block)).cast("B")
        while data:
            try:
                n = os.write(fd, data)
            except InterruptedError:
                continue
            except OSError as e:
                raise OSError(e.errno, e.strerror, path) from None
            data = data[n:]


def _raise(code, path):
    if -code >= L.PM_EFIRST:
        raise L.error_for(code, "patchmap.save")
    e = OSError(-code, os.strerror(-code), path)
    raise e


def save(file, X):
    """Writes the patch matrix X to a .npy file, as numpy.save(file, X) would
    write it, but computing the bytes in the library (pm_matrix_write) instead
    of reading them through the mapping: it works on every backend and
    mechanism, also where numpy.save(file, X) and X.tofile() fail with
    "OSError: ... requested and 0 written" (a non-root user under Debian's
    vm.unprivileged_userfaultfd=0, or the sigsegv backend), and for a
    PatchMatrix opened with backend="none". Nothing is faulted into the
    mapping.

    file: a path (str, bytes or os.PathLike; ".npy" is appended when it does
        not end so, as numpy.save does), or a binary file object open for
        writing (written at its position; with a descriptor, fileno(), the
        library writes to it directly).
    X: an array returned by patchmap.windows(), a row slice of one (X[a:b],
        X[a:b:k]), or a PatchMatrix.

    A path is written to a temporary file in the same directory, then renamed
    over it: an existing file is replaced only by a complete one (its
    permissions kept; a symbolic link is followed, and its target replaced).
    Refused, before anything is written: an existing file without write
    permission (PermissionError, as cp refuses) or that nobody may write
    (mode 0444: refused for root too, as the patchmap tool refuses it), a directory
    (IsADirectoryError), and the file the matrix's source image is mapped
    from (numpy.load with mmap_mode, numpy.memmap: ValueError), which the
    output would destroy, named by its path or open as the file object. A failed write (disk full, Ctrl-C) leaves no
    partial file; errors name `file`, not the temporary.
    """
    if isinstance(X, _core.PatchMatrix):
        owner = X._live_owner()
        first, count, stride = 0, X.shape[0], 1
    else:
        owner, first, count, stride = _core._row_selection(X, "patchmap.save",
                                                           "numpy.save(file, X[...].copy())")
    info = owner.info
    header = _header(info["dtype"], (count, info["cols"]))

    if hasattr(file, "write") and not isinstance(file, (str, bytes, os.PathLike)):
        return _save_to_file_object(file, owner, header, first, count, stride)

    path = os.fspath(file)
    suffix = ".npy" if isinstance(path, str) else b".npy"
    if not path.endswith(suffix):
        path = path + suffix
    target = os.path.realpath(path) if os.path.islink(path) else path
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "patchmap.save: is a directory", path)
        if (st.st_dev, st.st_ino) in _source_files(owner):
            raise ValueError("patchmap.save: %r is the file the matrix's source image is "
                             "read from; writing it would destroy the image: choose "
                             "another path" % (os.fsdecode(path),))
        if not stat.S_ISREG(st.st_mode):  # a device or a FIFO: written in place
            with open(target, "wb") as f:
                return _save_to_file_object(f, owner, header, first, count, stride, path)
        if not os.access(target, os.W_OK) or not st.st_mode & 0o222:
            raise PermissionError(errno.EACCES, "patchmap.save: the file exists and is "
                                  "read-only (not replaced; remove it or make it writable "
                                  "first)", path)

    directory, name = os.path.split(target)
    tail = ".%s.tmp" % secrets.token_hex(6)
    if isinstance(name, bytes):
        tmp = os.path.join(directory, b"." + name + tail.encode())
    else:
        tmp = os.path.join(directory, "." + name + tail)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError as e:
        raise OSError(e.errno, "patchmap.save: cannot create a file beside it (%s)"
                      % e.strerror, path) from None
    done = False
    try:
        if st is not None:
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
        _write_all(fd, header, path)
        _write_body(owner, fd, first, count, stride, path)
        os.close(fd)
        fd = -1
        try:
            os.replace(tmp, target)
        except OSError as e:
            raise OSError(e.errno, "patchmap.save: %s" % e.strerror, path) from None
        done = True
    finally:
        if fd >= 0:
            os.close(fd)
        if not done:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return None


def _write_all(fd, data, path):
    data = memoryview(data)
    while data:
        try:
            n = os.write(fd, data)
        except InterruptedError:
            continue
        except OSError as e:
            raise OSError(e.errno, e.strerror, path) from None
        data = data[n:]


def _save_to_file_object(f, owner, header, first, count, stride, name=None):
    name = name if name is not None else getattr(f, "name", None)
    try:
        fd = f.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        fd = None
    if fd is not None:
        try:
            st = os.fstat(fd)
        except OSError:
            st = None
        if st is not None and (st.st_dev, st.st_ino) in _source_files(owner):
            raise ValueError("patchmap.save: %r is open on the file the matrix's source "
                             "image is read from; writing it would destroy the image: "
                             "choose another file" % (name,))
    if fd is None:  # io.BytesIO and the like: rows through memory, in blocks
        f.write(header)
        info = owner.info
        rows_per = max(1, _BLOCK // (info["ld"] * info["dtype"].itemsize))
        for a in range(0, count, rows_per):
            rows = first + stride * np.arange(a, min(count, a + rows_per), dtype=np.int64)
            f.write(np.ascontiguousarray(_core._read_rows(owner, rows, rows.shape)).tobytes())
        return None
    f.write(header)
    f.flush()
    _write_body(owner, fd, first, count, stride, name)
    try:  # the file object's idea of its position, after writes behind it
        f.seek(os.lseek(fd, 0, os.SEEK_CUR))
    except (OSError, ValueError, io.UnsupportedOperation):
        pass
    return None
