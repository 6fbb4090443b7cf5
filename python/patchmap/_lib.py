"""_lib.py: finds and loads libpatchmap with ctypes, mirrors the C structs and
constants of patchmap.h, and turns the library's error codes into Python
exceptions. Nothing here knows about numpy."""

import ctypes
import ctypes.util
import errno as _errno
import glob
import os

# ------------------------------------------------------------ constants
# Values of patchmap.h; tests/pm-abi-dump.c prints the C ones and the test
# suite compares the two.

PM_MAX_DIMS = 8
PM_MAX_PAD = 1 << 32
PM_DEFAULT_BUDGET = 256 << 20
PM_DEFAULT_CHUNK = 4 << 20
PM_DEFAULT_BUDGET_SHARE = 2
PM_BUDGET_UNLIMITED = ctypes.c_size_t(-1).value

PM_EFIRST = 1000
PM_ENULL = 1000
PM_EOPTSIZE = 1001
PM_EDTYPE = 1002
PM_EOUTDTYPE = 1003
PM_ENDIM = 1004
PM_ECHANNEL = 1005
PM_ESHAPE = 1006
PM_EWINDOW = 1007
PM_ESTEP = 1008
PM_EDILATION = 1009
PM_EPAD = 1010
PM_EPADMODE = 1011
PM_EPADVALUE = 1012
PM_EWINDOWBIG = 1013
PM_EORDER = 1014
PM_ELAYOUT = 1015
PM_EPITCH = 1016
PM_EAFFINE = 1017
PM_ETOOBIG = 1018
PM_EBACKEND = 1019
PM_ECHUNK = 1020
PM_ETHREADS = 1021
PM_ELENGTH = 1022
PM_ERANGE = 1023
PM_ESPEC = 1024
PM_EKEY = 1025
PM_EAMBIGUOUS = 1026
PM_EBUDGET = 1027
PM_EROWSKIND = 1028
PM_EROWINDEX = 1029
PM_EMASKLEN = 1030
PM_EROWSEMPTY = 1031
PM_EROWRANGE = 1032
PM_EROWSLAYOUT = 1033
PM_EFOLDSHAPE = 1034
PM_EFOLDMODE = 1035
PM_EMEMORY = 1036
PM_ELAST = 1037

PM_DTYPE_SAME = 0
PM_DTYPE_U8 = 1
PM_DTYPE_I8 = 2
PM_DTYPE_U16 = 3
PM_DTYPE_I16 = 4
PM_DTYPE_U32 = 5
PM_DTYPE_I32 = 6
PM_DTYPE_F32 = 7
PM_DTYPE_F64 = 8
PM_DTYPE_I64 = 9
PM_DTYPE_U64 = 10
PM_DTYPE_BOOL = 11
PM_DTYPE_F16 = 12

PM_BACKEND_AUTO = 0
PM_BACKEND_UFFD = 1
PM_BACKEND_SIGSEGV = 2
PM_BACKEND_EAGER = 3
PM_BACKEND_NONE = 4

PM_PAD_ZERO = 0
PM_PAD_CONSTANT = 1
PM_PAD_EDGE = 2
PM_PAD_REFLECT = 3
PM_PAD_SYMMETRIC = 4
PM_PAD_WRAP = 5

PM_ORDER_WINDOW = 0
PM_ORDER_CHANNEL = 1

PM_LAYOUT_ROWS = 0
PM_LAYOUT_COLS = 1

PM_LAZY_WRITABLE = 0x1

PM_MEMORY_UNKNOWN = 0
PM_MEMORY_MACHINE = 1
PM_MEMORY_CGROUP_V1 = 2
PM_MEMORY_CGROUP_MAX = 3
PM_MEMORY_CGROUP_HIGH = 4

MECHANISMS = {
    "uffd_full": 0x01,
    "uffd_user_only": 0x02,
    "move": 0x04,
    "copy": 0x08,
    "mremap": 0x10,
    "hugepages": 0x20,
    "write_protect": 0x40,
    "poison": 0x80,
}

# ---------------------------------------------------------------- structs
# Field for field as in patchmap.h (size_t -> c_size_t, ptrdiff_t ->
# c_ssize_t, bool -> c_bool); the ABI test checks every offset and size.


class pm_lazy_opts(ctypes.Structure):
    _fields_ = [
        ("backend", ctypes.c_int),
        ("budget", ctypes.c_size_t),
        ("chunk", ctypes.c_size_t),
        ("threads", ctypes.c_int),
        ("readahead", ctypes.c_int),
        ("flags", ctypes.c_uint),
    ]


class pm_stats(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_size_t),
        ("backend", ctypes.c_int),
        ("mechanism", ctypes.c_uint),
        ("threads", ctypes.c_int),
        ("chunk_bytes", ctypes.c_size_t),
        ("budget_bytes", ctypes.c_size_t),
        ("faults", ctypes.c_uint64),
        ("chunks_filled", ctypes.c_uint64),
        ("bytes_filled", ctypes.c_uint64),
        ("evictions", ctypes.c_uint64),
        ("readahead_fills", ctypes.c_uint64),
        ("readahead_hits", ctypes.c_uint64),
        ("fill_errors", ctypes.c_uint64),
        ("resident_bytes", ctypes.c_uint64),
        ("peak_resident_bytes", ctypes.c_uint64),
        ("fill_ns", ctypes.c_uint64),
        ("memory_available", ctypes.c_uint64),
        ("budget_lowered", ctypes.c_bool),
    ]


class pm_source(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("dtype", ctypes.c_int),
        ("ndim", ctypes.c_int),
        ("shape", ctypes.c_size_t * PM_MAX_DIMS),
        ("strides", ctypes.c_ssize_t * PM_MAX_DIMS),
        ("has_channels", ctypes.c_bool),
        ("channel_axis", ctypes.c_int),
    ]


class pm_window(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_size_t),
        ("step", ctypes.c_size_t),
        ("dilation", ctypes.c_size_t),
        ("pad_before", ctypes.c_int64),
        ("pad_after", ctypes.c_int64),
    ]


class pm_matrix_opts(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_size_t),
        ("source", pm_source),
        ("window", pm_window * PM_MAX_DIMS),
        ("pad_mode", ctypes.c_int),
        ("pad_value", ctypes.c_double),
        ("dtype", ctypes.c_int),
        ("affine", ctypes.c_bool),
        ("scale", ctypes.c_double),
        ("offset", ctypes.c_double),
        ("order", ctypes.c_int),
        ("layout", ctypes.c_int),
        ("row_pitch", ctypes.c_size_t),
        ("lazy", pm_lazy_opts),
    ]


class pm_matrix_info(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_size_t),
        ("rows", ctypes.c_size_t),
        ("cols", ctypes.c_size_t),
        ("ld", ctypes.c_size_t),
        ("elem_size", ctypes.c_size_t),
        ("bytes", ctypes.c_size_t),
        ("dtype", ctypes.c_int),
        ("nspatial", ctypes.c_int),
        ("out_shape", ctypes.c_size_t * PM_MAX_DIMS),
        ("windows", ctypes.c_size_t),
        ("window_elems", ctypes.c_size_t),
        ("channels", ctypes.c_size_t),
    ]


class pm_backend_probe(ctypes.Structure):
    _fields_ = [
        ("err", ctypes.c_int),
        ("backend", ctypes.c_int),
        ("mechanism", ctypes.c_uint),
    ]


class pm_memory(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_size_t),
        ("available", ctypes.c_uint64),
        ("kind", ctypes.c_int),
        ("limit", ctypes.c_uint64),
        ("used", ctypes.c_uint64),
        ("cgroup", ctypes.c_char * 256),
        ("source", ctypes.c_char * 320),
        ("machine_available", ctypes.c_uint64),
    ]


class pm_system(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_size_t),
        ("kernel", ctypes.c_char * 65),
        ("machine", ctypes.c_char * 65),
        ("unprivileged_userfaultfd", ctypes.c_int),
        ("uffd_full", ctypes.c_int),
        ("uffd_user_only", ctypes.c_int),
        ("dev_userfaultfd", ctypes.c_int),
        ("uffd_api", ctypes.c_int),
        ("uffd_features", ctypes.c_uint64),
        ("uffd_move", ctypes.c_bool),
        ("uffd_poison", ctypes.c_bool),
        ("uffd_write_protect", ctypes.c_bool),
        ("thp", ctypes.c_char * 16),
        ("seccomp", ctypes.c_int),
        ("backend_env", ctypes.c_char * 16),
        ("probe", pm_backend_probe * PM_BACKEND_NONE),
        ("memory", pm_memory),
    ]


STRUCTS = {
    "pm_lazy_opts": pm_lazy_opts,
    "pm_stats": pm_stats,
    "pm_source": pm_source,
    "pm_window": pm_window,
    "pm_matrix_opts": pm_matrix_opts,
    "pm_matrix_info": pm_matrix_info,
    "pm_backend_probe": pm_backend_probe,
    "pm_memory": pm_memory,
    "pm_system": pm_system,
}

# ----------------------------------------------------------------- errors


class Error(Exception):
    """Base of every error raised from a libpatchmap code. `code` is the
    library's negative return value."""

    code = 0


class InvalidArgument(Error, ValueError):
    """A bad parameter (one of the library's PM_E* codes)."""


class OutOfMemory(Error, MemoryError):
    """-ENOMEM: out of memory, or of address space for the reservation; or
    -PM_EMEMORY: a budget (or an eager matrix) larger than the memory this
    process may still take (its cgroup's limit, or the machine's)."""


class SystemCallError(Error, OSError):
    """Any other system error (-EPERM, -ENOSYS, ...); `errno` is set."""


def error_for(code, context=None):
    """The exception for a negative library code, with pm_strerror's text."""
    text = lib().pm_strerror(code).decode()
    if context:
        text = "%s: %s" % (context, text)
    n = -code
    if n == PM_EMEMORY:
        exc = OutOfMemory(text)
    elif n >= PM_EFIRST:  # the library's own input errors; errno values are far below
        exc = InvalidArgument(text)
    elif n == _errno.ENOMEM:
        exc = OutOfMemory(text)
    else:
        exc = SystemCallError(n, text)
    exc.code = code
    return exc


def error_with_text(code, text):
    """The exception for a negative library code, with the given text (a
    pm_spec message, which says more than the code's)."""
    n = -code
    if n == PM_EMEMORY:
        exc = OutOfMemory(text)
    elif n >= PM_EFIRST:
        exc = InvalidArgument(text)
    elif n == _errno.ENOMEM:
        exc = OutOfMemory(text)
    else:
        exc = SystemCallError(n, text)
    exc.code = code
    return exc


def check(code, context=None):
    """Raises the exception for `code` if it is negative; returns it."""
    if code < 0:
        raise error_for(code, context)
    return code


# ---------------------------------------------------------------- loading

_SONAME = "libpatchmap.so.1"
_lib = None
_lib_path = None


def _sanitized(path):
    """True if the file is built with a sanitizer runtime, which cannot be
    loaded into an ordinary interpreter (the runtime would abort it)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return False
    return any(s in data for s in (b"libasan.so", b"libtsan.so", b"libubsan.so",
                                   b"__asan_init", b"__tsan_init"))


def _candidates():
    """Where to look, best first: PATCHMAP_LIBRARY, the copy in a wheel,
    next to the package, where `meson install` put it, the build trees of a
    source checkout (../build*), then the system loader."""
    env = os.environ.get("PATCHMAP_LIBRARY")
    if env:
        # An explicit choice is final: no silent fallback to another copy.
        return [env], True
    here = os.path.dirname(os.path.abspath(__file__))
    # A wheel's own copy first: meson-python puts it in
    # site-packages/.patchmap.mesonpy.libs under its full version name.
    found = sorted(glob.glob(os.path.join(os.path.dirname(here), ".patchmap.mesonpy.libs",
                                          "libpatchmap.so.*")), reverse=True)
    for name in ("libpatchmap.so", _SONAME):
        found.append(os.path.join(here, name))
    try:  # where `meson install` put it, if it installed this package
        from ._install import LIBDIR, PKGDIR
        found.append(os.path.normpath(os.path.join(here, os.path.relpath(LIBDIR, PKGDIR),
                                                   _SONAME)))
    except ImportError:
        pass
    top = os.path.dirname(os.path.dirname(here))  # python/patchmap -> checkout
    builds = glob.glob(os.path.join(top, "build*", "libpatchmap.so"))
    # "build" first, then the most recently built.
    builds.sort(key=lambda p: (os.path.basename(os.path.dirname(p)) != "build",
                               -os.path.getmtime(p)))
    found += builds
    return [p for p in found if os.path.exists(p)] + [_SONAME], False


def _declare(L):
    c = ctypes
    sig = {
        "pm_version": (c.c_char_p, []),
        "pm_default_threads": (c.c_int, []),
        "pm_strerror": (c.c_char_p, [c.c_int]),
        "pm_error_errno": (c.c_int, [c.c_int]),
        "pm_dtype_size": (c.c_size_t, [c.c_int]),
        "pm_dtype_name": (c.c_char_p, [c.c_int]),
        "pm_backend_name": (c.c_char_p, [c.c_int]),
        "pm_backend_parse": (c.c_int, [c.c_char_p]),
        "pm_matrix_describe": (c.c_int, [c.POINTER(pm_matrix_opts), c.POINTER(pm_matrix_info)]),
        "pm_matrix_open": (c.c_int, [c.POINTER(pm_matrix_opts), c.POINTER(c.c_void_p)]),
        "pm_matrix_close": (c.c_int, [c.c_void_p]),
        "pm_matrix_data": (c.c_void_p, [c.c_void_p]),
        "pm_matrix_info": (c.c_int, [c.c_void_p, c.POINTER(pm_matrix_info)]),
        "pm_matrix_read": (c.c_int, [c.c_void_p, c.c_size_t, c.c_void_p, c.c_size_t]),
        "pm_matrix_write": (c.c_int, [c.c_void_p, c.c_int, c.c_size_t, c.c_size_t]),
        "pm_spec_new": (c.c_int, [c.POINTER(c.c_void_p)]),
        "pm_spec_free": (None, [c.c_void_p]),
        "pm_spec_set": (c.c_int, [c.c_void_p, c.c_char_p, c.c_char_p]),
        "pm_spec_error": (c.c_char_p, [c.c_void_p]),
        "pm_spec_key": (c.c_char_p, [c.c_int]),
        "pm_spec_matrix": (c.c_int, [c.c_void_p, c.POINTER(pm_source), c.POINTER(pm_matrix_opts),
                                     c.POINTER(pm_matrix_info)]),
        "pm_spec_check_memory": (c.c_int, [c.c_void_p, c.POINTER(pm_matrix_info)]),
        "pm_size_parse": (c.c_int, [c.c_char_p, c.c_bool, c.POINTER(c.c_size_t)]),
        "pm_dtype_parse": (c.c_int, [c.c_char_p, c.POINTER(c.c_bool)]),
        "pm_pad_mode_name": (c.c_char_p, [c.c_int]),
        "pm_order_name": (c.c_char_p, [c.c_int]),
        "pm_layout_name": (c.c_char_p, [c.c_int]),
        "pm_matrix_stats": (c.c_int, [c.c_void_p, c.POINTER(pm_stats)]),
        "pm_matrix_error": (c.c_int, [c.c_void_p]),
        "pm_system_probe": (c.c_int, [c.POINTER(pm_system)]),
        "pm_memory_available": (c.c_int, [c.POINTER(pm_memory)]),
        "pm_system_report": (c.c_int, [c.POINTER(pm_system), c.c_char_p, c.c_size_t]),
    }
    for name, (res, args) in sig.items():
        fn = getattr(L, name)
        fn.restype = res
        fn.argtypes = args


def lib():
    """The loaded library (loaded on first use). Raises OSError, naming every
    place tried, if it cannot be found."""
    global _lib, _lib_path
    if _lib is not None:
        return _lib
    paths, explicit = _candidates()
    tried = []
    for path in paths:
        if os.path.exists(path) and _sanitized(path):
            tried.append("%s (built with a sanitizer)" % path)
            continue
        try:
            L = ctypes.CDLL(path)
        except OSError as e:
            tried.append("%s (%s)" % (path, e))
            continue
        try:
            _declare(L)
        except AttributeError as e:
            tried.append("%s (%s)" % (path, e))
            continue
        _lib, _lib_path = L, path
        return L
    how = "PATCHMAP_LIBRARY names" if explicit else "tried"
    raise OSError("patchmap: cannot load libpatchmap (%s: %s); install it, or set "
                  "PATCHMAP_LIBRARY to the path of libpatchmap.so" % (how, "; ".join(tried)))


def library_path():
    """The path the library was loaded from (loading it if needed)."""
    lib()
    return _lib_path
