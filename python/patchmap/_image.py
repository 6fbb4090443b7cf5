"""_image.py: imread(), an image file read by libvips (through
libpatchmap-image) as a read-only ndarray whose pages are decoded on first
touch and dropped again under a budget."""

import ctypes
import operator
import os
import re
import weakref

import numpy as np

from . import _lib as L

_SONAME = "libpatchmap-image.so.1"
_ilib = None

_DTYPES = {L.PM_DTYPE_U8: "|u1", L.PM_DTYPE_I8: "|i1", L.PM_DTYPE_U16: "<u2",
           L.PM_DTYPE_I16: "<i2", L.PM_DTYPE_U32: "<u4", L.PM_DTYPE_I32: "<i4",
           L.PM_DTYPE_F32: "<f4", L.PM_DTYPE_F64: "<f8"}

PM_IMAGE_EFIRST = 2000
PM_IMAGE_ELAST = 2007


class pm_image_opts(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_size_t),
        ("page", ctypes.c_int),
        ("level", ctypes.c_int),
        ("bands", ctypes.POINTER(ctypes.c_int)),
        ("nbands", ctypes.c_int),
        ("lazy", L.pm_lazy_opts),
        ("flags", ctypes.c_uint),
    ]


class pm_image_info(ctypes.Structure):
    _fields_ = [
        ("loader", ctypes.c_char * 32),
        ("width", ctypes.c_int),
        ("height", ctypes.c_int),
        ("bands", ctypes.c_int),
        ("file_bands", ctypes.c_int),
        ("dtype", ctypes.c_int),
        ("pages", ctypes.c_int),
        ("levels", ctypes.c_int),
        ("page", ctypes.c_int),
        ("level", ctypes.c_int),
        ("random_access", ctypes.c_bool),
    ]


class ImageError(L.Error, OSError):
    """The file is missing, not an image libvips reads here, or its decoder
    refused it; the message carries the decoder's own words."""


def image_library():
    """libpatchmap-image, loaded on first use: PATCHMAP_IMAGE_LIBRARY, beside
    the libpatchmap that was loaded (image/ of a build tree, or the same
    directory), then the system's."""
    global _ilib
    if _ilib is not None:
        return _ilib
    core = L.library_path()
    env = os.environ.get("PATCHMAP_IMAGE_LIBRARY")
    if env:
        paths = [env]
    else:
        d = os.path.dirname(os.path.abspath(core)) if os.sep in core else ""
        paths = [p for p in (os.path.join(d, "image", "libpatchmap-image.so"),
                             os.path.join(d, "libpatchmap-image.so"),
                             os.path.join(d, _SONAME)) if d and os.path.exists(p)]
        paths.append(_SONAME)
    tried = []
    for p in paths:
        try:
            lib = ctypes.CDLL(p)
        except OSError as e:
            tried.append("%s (%s)" % (p, e))
            continue
        c = ctypes
        for name, res, args in [
                ("pm_image_open", c.c_int, [c.c_char_p, c.POINTER(pm_image_opts),
                                            c.POINTER(c.c_void_p), c.c_char_p, c.c_size_t]),
                ("pm_image_close", c.c_int, [c.c_void_p]),
                ("pm_image_source", c.POINTER(L.pm_source), [c.c_void_p]),
                ("pm_image_info", c.c_int, [c.c_void_p, c.POINTER(pm_image_info)]),
                ("pm_image_stats", c.c_int, [c.c_void_p, c.POINTER(L.pm_stats)]),
                ("pm_image_error", c.c_int, [c.c_void_p, c.c_char_p, c.c_size_t]),
                ("pm_image_strerror", c.c_char_p, [c.c_int]),
                ("pm_image_matrix_read", c.c_int, [c.c_void_p, c.c_size_t, c.c_void_p,
                                                   c.c_size_t]),
                ("pm_image_matrix_write", c.c_int, [c.c_void_p, c.c_int, c.c_size_t,
                                                    c.c_size_t])]:
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        _ilib = lib
        return lib
    if ".patchmap.mesonpy.libs" in core:
        how = ("a wheel holds libpatchmap alone (libvips is not for a wheel to carry): "
               "install the libpatchmap-image1 package, or build the library from source "
               "with libvips-dev installed and set PATCHMAP_IMAGE_LIBRARY to its "
               "libpatchmap-image.so")
    else:
        how = ("it is built when libvips is installed (libvips-dev), or set "
               "PATCHMAP_IMAGE_LIBRARY")
    raise OSError("patchmap.imread: cannot load libpatchmap-image (tried: %s); %s"
                  % ("; ".join(tried), how))


def _close(handle):
    return image_library().pm_image_close(handle)


class _Image:
    """Owns one pm_image; ndarrays over its pixels keep it as their base."""

    __slots__ = ("_handle", "_finalizer", "__array_interface__", "info", "__weakref__")

    def __init__(self, handle, interface, info):
        self._handle = handle
        self.__array_interface__ = interface
        self.info = info
        self._finalizer = weakref.finalize(self, _close, handle)
        # At exit the mapping is left to the OS: a later object might read it.
        self._finalizer.atexit = False

    def error(self):
        msg = ctypes.create_string_buffer(512)
        code = image_library().pm_image_error(self._handle, msg, len(msg))
        return code, msg.value.decode(errors="replace")


# The image keys of every front end (doc/options.md, "Keys of the front
# ends"): the same values and messages as the tool's --page, --level and
# --bands and a descriptor's page, level and bands (common/options.c), after
# the Python argument. The memory options are the grammar's (_lazy).
_MAX_BANDS = 64


def _quote(text):
    return text[:40] + ("..." if len(text) > 40 else "")


def _key_text(value, arg):
    """An int (numpy's too) or its text, as text; never a float or a bool."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        raise TypeError("patchmap.imread: %s must be an integer, not a bool" % arg)
    try:
        return str(operator.index(value))
    except TypeError:
        raise TypeError("patchmap.imread: %s must be an integer, not %r" % (arg, value)) from None


def _index(text):
    t = text.strip(" \t")
    if not re.fullmatch(r"[0-9]+", t) or int(t) > 2**31 - 1:
        return None
    return int(t)


def _page_level(value, arg):
    text = _key_text(value, arg)
    n = _index(text)
    if n is None:
        what = ("a page number (0 for the first)" if arg == "page" else
                "a pyramid level (0 for the full resolution, 1 the next, ...)")
        raise L.InvalidArgument("patchmap.imread(%s=%r): %s: '%s' is not %s"
                                % (arg, value, arg, _quote(text), what))
    return n


def _lazy(name, backend, budget, chunk, threads):
    """The image's pm_lazy_opts from the grammar every front end shares
    (pm_spec: budget not 0, threads a whole count, ...), resolved as the
    options of a one-sample matrix, whose lazy options they are."""
    lz = L.pm_lazy_opts()
    given = {k: v for k, v in (("backend", backend), ("budget", budget), ("chunk", chunk),
                               ("threads", threads)) if v is not None}
    if not given:
        return lz
    if isinstance(backend, str) and backend.strip().lower() == "none":
        raise L.InvalidArgument("%s(backend='none'): backend: an image is decoded into lazy "
                                "memory: give auto, uffd, sigsegv or eager" % name)
    from ._core import _build_opts
    _, o = _build_opts(name, np.zeros(1, np.uint8), 1, check_memory=False, **given)
    return o.lazy


def _bands(value):
    """The bands to keep, from a sequence of ints, an int, or the text
    "2,1,0" of every front end."""
    if isinstance(value, str):
        text = value
    elif np.ndim(value) == 0:
        text = _key_text(value, "bands")
    else:
        items = list(value)
        if not items:
            raise L.InvalidArgument("patchmap.imread(bands=%r): no band kept: give the bands "
                                    "to keep (such as [0, 2]), or None for all" % (value,))
        text = ",".join(_key_text(b, "bands") for b in items)
    items = text.split(",")
    if len(items) > _MAX_BANDS and all(_index(b) is not None for b in items):
        raise L.InvalidArgument("patchmap.imread(bands=%r): bands: '%s' lists more than %d "
                                "bands" % (value, _quote(text), _MAX_BANDS))
    out = [_index(b) for b in items]
    if not text or len(text) >= 512 or None in out:
        raise L.InvalidArgument("patchmap.imread(bands=%r): bands: '%s' is not a list of band "
                                "numbers from 0 such as 0 or 2,1,0" % (value, _quote(text)))
    return out


def imread(path, *, page=0, level=0, bands=None, backend=None, budget=None, chunk=None,
           threads=None):
    """The image in `path` as a read-only ndarray, decoded lazily by libvips.

    Returns an ndarray of shape (height, width) for one band, (height,
    width, bands) for several, in the file's own sample type (uint8,
    uint16, float32, ...). No pixel is decoded before it is read: a page is
    decoded (a band of whole rows, by libvips) on first touch and dropped
    again under `budget`, so the image may be larger than memory. The array
    is ordinary to numpy and may be the source of patchmap.windows(), which
    then reads only the rows its windows need. It stays valid while any
    array over it lives.

    path: any file libvips reads: TIFF/BigTIFF (tiled, striped, pyramidal),
        PNG, JPEG, WebP, JPEG 2000, GIF, OpenSlide slides (.svs, .ndpi,
        .mrxs, ...), FITS, OpenEXR, .v.
    page: the page of a multi-page file (0 the first).
    level: the pyramid level (0 the full resolution) of an OpenSlide slide,
        a pyramidal TIFF or a JPEG 2000 file.
    bands: the bands to keep, in order (a list of ints, or its text
        "2,1,0"); default all.
    backend, budget, chunk, threads: the image's own lazy memory, as in
        patchmap.windows (budget default 256 MiB; the tool and the
        descriptors call this budget image_budget).
    page, level and bands take the values and give the messages of the
    tool's --page, --level and --bands.

    Raises patchmap.ImageError (an OSError) when the file is missing, is not
    an image or its decoder refuses it (a truncated or damaged file is
    refused, never completed with invented pixels), with the decoder's
    message; patchmap.InvalidArgument for a page, level or band the file
    lacks. A part of the image that fails to decode later, while being read,
    raises SIGBUS in the reading thread when the reader is numpy or your
    code, as reading a damaged file through numpy.memmap would; the
    package's own reads of a matrix over the image (patchmap.save, take,
    PatchMatrix.read) raise ImageError with the decoder's message instead,
    and save leaves no file behind. Once a part failed, the image gives no
    more pixels.
    """
    lib = image_library()
    o = pm_image_opts(size=ctypes.sizeof(pm_image_opts), page=_page_level(page, "page"),
                      level=_page_level(level, "level"))
    keep = None
    if bands is not None:
        bl = _bands(bands)
        keep = (ctypes.c_int * max(1, len(bl)))(*bl)
        o.bands = keep
        o.nbands = len(bl)
    o.lazy = _lazy("patchmap.imread", backend, budget, chunk, threads)
    handle = ctypes.c_void_p()
    msg = ctypes.create_string_buffer(512)
    code = lib.pm_image_open(os.fsencode(path), ctypes.byref(o), ctypes.byref(handle), msg,
                             len(msg))
    del keep
    if code < 0:
        text = "patchmap.imread: %s: %s" % (os.fsdecode(path), msg.value.decode(
            errors="replace") or lib.pm_image_strerror(code).decode())
        n = -code
        if n in (L.PM_EMEMORY, 12):  # the memory policy, ENOMEM: as windows() says them
            exc = L.OutOfMemory(text)
        elif n in (PM_IMAGE_EFIRST + 3, PM_IMAGE_EFIRST + 4, PM_IMAGE_EFIRST + 5) or \
                L.PM_EFIRST <= n < L.PM_ELAST:
            exc = L.InvalidArgument(text)
        elif PM_IMAGE_EFIRST <= n < PM_IMAGE_ELAST:
            exc = ImageError(text)
        else:
            exc = ImageError(n, text)
        exc.code = code
        raise exc
    src = lib.pm_image_source(handle).contents
    info = pm_image_info()
    lib.pm_image_info(handle, ctypes.byref(info))
    shape = tuple(src.shape[i] for i in range(src.ndim))
    interface = {"shape": shape, "typestr": _DTYPES[src.dtype],
                 "data": (src.data, True), "strides": None, "version": 3}
    try:  # the file read, which patchmap.save must not replace
        st = os.stat(path)
        file_id = (st.st_dev, st.st_ino)
    except OSError:
        file_id = None
    owner = _Image(handle.value, interface, {
        "loader": info.loader.decode(), "pages": info.pages, "levels": info.levels,
        "page": info.page, "level": info.level, "file_bands": info.file_bands,
        "random_access": bool(info.random_access), "path": os.fsdecode(path),
        "file_id": file_id})
    arr = np.asarray(owner)
    arr.flags.writeable = False
    return arr


def _image_of(arr):
    """The _Image an array returned by imread (or a view of one) is over,
    else None."""
    base = arr
    while base is not None and not isinstance(base, _Image):
        base = getattr(base, "base", None)
    return base


def guarded(source):
    """For the package's own reads of a matrix over `source` (the array the
    matrix reads): (read, write, image) where read and write are
    pm_matrix_read / pm_matrix_write, or, when the source is an imread
    image, their libpatchmap-image versions that return -EIO where a part of
    the image fails to decode, instead of raising SIGBUS in this thread."""
    img = _image_of(source)
    if img is None:
        return L.lib().pm_matrix_read, L.lib().pm_matrix_write, None
    lib = image_library()
    return lib.pm_image_matrix_read, lib.pm_image_matrix_write, img


def decode_error(img, who):
    """ImageError for a decoding failure of img met by `who`."""
    code, msg = img.error()
    return ImageError(5, "%s: %s: %s" % (who, img.info.get("path", "the image"),
                                        msg or "a part of the image failed to decode"))


def image_info(arr):
    """What imread() found in the file of `arr` (an array imread returned, or
    a view of one): loader, pages, levels, page, level, file_bands,
    random_access, path."""
    base = arr
    while base is not None and not isinstance(base, _Image):
        base = getattr(base, "base", None)
    if base is None:
        raise ValueError("patchmap.image_info: not an array returned by patchmap.imread")
    return dict(base.info)
