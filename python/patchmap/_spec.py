"""_spec.py: the arguments of windows() as the library's option grammar.

Python parses no option itself: every keyword argument becomes the text the
patchmap tool and the descriptors take ("16x16", "1x2,3x4", "float32") and
goes to pm_spec_set; pm_spec_matrix resolves the channel rule, "same"
padding and the defaults against the source and checks the result, and
pm_spec_check_memory applies the memory policy of every front end. What is
Python's own is the shape of the arguments: numpy.pad's pad_width forms,
ints and tuples, numpy dtypes."""

import ctypes
import numbers
import operator

import numpy as np

from . import _lib as L

# Python names of the grammar's keys where they differ (numpy's spelling).
PYTHON_NAME = {"window": "window_shape", "pad": "padding"}


def _is_int(v):
    return isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_))


def _int_text(v, name, what="an integer"):
    if isinstance(v, (bool, np.bool_)):
        raise TypeError("%s must be an integer, not a bool" % name)
    try:
        return str(operator.index(v))
    except TypeError:
        raise TypeError("%s must be %s, not %r" % (name, what, v)) from None


def dims_text(v, name):
    """An int, or a sequence of ints (one per spatial axis): "16", "16x8"."""
    if isinstance(v, str):
        return v
    what = "an integer or a flat sequence of integers"
    if np.ndim(v) == 0:
        return _int_text(v, name, what)
    items = list(v)
    if not items or any(np.ndim(x) != 0 for x in items):
        raise TypeError("%s must be %s, not %r" % (name, what, v))
    return "x".join(_int_text(x, name, what) for x in items)


def _count_text(v, name):
    if isinstance(v, str):
        return v
    if isinstance(v, (bool, np.bool_)):
        raise TypeError("%s must be an integer, not a bool" % name)
    try:
        return str(operator.index(v))
    except TypeError:
        raise TypeError("%s must be an integer (or its text), not %r" % (name, v)) from None


def _number_text(v, name):
    if isinstance(v, str):
        return v
    if isinstance(v, (bool, np.bool_)):
        return "1" if v else "0"
    if _is_int(v):
        return str(int(v))
    if isinstance(v, (numbers.Real, np.floating)):
        return repr(float(v))  # shortest text that reads back as the same double
    raise TypeError("%s must be a number, not %r" % (name, v))


def _size_text(v, name):
    if isinstance(v, str):
        return v
    if isinstance(v, float) and v == float("inf"):
        return "unlimited"
    return _int_text(v, name, "a whole number of bytes or a size such as '1.5G'"
                     + (" (float('inf'): no limit)" if name == "budget" else ""))


def _name_text(v, name):
    if isinstance(v, str):
        return v
    raise TypeError("%s must be a name (a str), not %r" % (name, v))


def _dtype_text(v, name):
    if isinstance(v, str):
        return v
    try:
        dt = np.dtype(v)
    except TypeError:
        raise TypeError("%s must be a numpy dtype or its name, not %r" % (name, v)) from None
    return dt.name if dt.isnative else dt.str


def _axis_text(v, name):
    if isinstance(v, str):
        return v
    return _int_text(v, name)


def _bool_text(v, name):
    if isinstance(v, str):
        return v
    if isinstance(v, (bool, np.bool_)) or v in (0, 1):
        return "yes" if v else "no"
    raise TypeError("%s must be True or False, not %r" % (name, v))


def pad_text(padding):
    """numpy.pad's pad_width forms (an int; a (before, after) pair for every
    axis; one pair, or one int, per axis) or "same"/"valid", as the
    grammar's pad text, and the pair given flat (for the PyTorch check)."""
    if isinstance(padding, str):
        return padding, None
    if np.ndim(padding) == 0:
        return _int_text(padding, "padding"), None
    rows = list(padding)
    if all(np.ndim(r) == 0 for r in rows):
        if len(rows) == 2:  # numpy.pad: (before, after) on every axis
            b, a = (_int_text(x, "padding") for x in rows)
            return "%sx%s" % (b, a), (int(b), int(a))
        if len(rows) == 1:
            return _int_text(rows[0], "padding"), None
        raise ValueError("padding: %r is not numpy.pad's pad_width: give an int, a (before, "
                         "after) pair, or one pair per spatial axis" % (padding,))
    out = []
    for r in rows:
        r = list(r) if np.ndim(r) == 1 else None
        if r is None or len(r) not in (1, 2):
            raise ValueError("padding: %r is not numpy.pad's pad_width: give an int, a "
                             "(before, after) pair, or one pair per spatial axis"
                             % (padding,))
        b, a = _int_text(r[0], "padding"), _int_text(r[-1], "padding")
        out.append(b if b == a else "%sx%s" % (b, a))
    if len(out) == 1:  # ((b, a),): numpy broadcasts it to every axis
        return out[0], None
    return ",".join(out), None


# argument name -> (grammar key, text of a Python value)
CONVERT = {
    "window_shape": ("window", dims_text),
    "step": ("step", dims_text),
    "dilation": ("dilation", dims_text),
    "pad_mode": ("pad_mode", _name_text),
    "pad_value": ("pad_value", _number_text),
    "channel_axis": ("channel_axis", _axis_text),
    "dtype": ("dtype", _dtype_text),
    "order": ("order", _name_text),
    "layout": ("layout", _name_text),
    "row_pitch": ("row_pitch", _size_text),
    "scale": ("scale", _number_text),
    "offset": ("offset", _number_text),
    "backend": ("backend", _name_text),
    "budget": ("budget", _size_text),
    "chunk": ("chunk", _size_text),
    "threads": ("threads", _count_text),
    "readahead": ("readahead", _count_text),
    "writable": ("writable", _bool_text),
    "row_range": ("row_range", lambda v, name: _range_text(v)),
}


def _range_text(v):
    """row_range=(a, b), a slice without a step, or the grammar's "A:B"."""
    if isinstance(v, str):
        return v
    if isinstance(v, slice):
        if v.step not in (None, 1):
            raise TypeError("row_range: a slice with a step (%r) is not a range" % (v,))
        a, b = v.start, v.stop
    else:
        try:
            a, b = v
        except (TypeError, ValueError):
            raise TypeError("row_range must be a (begin, end) pair, a slice or \"A:B\", not %r"
                            % (v,)) from None
    return "%s:%s" % ("" if a is None else _int_text(a, "row_range"),
                      "" if b is None else _int_text(b, "row_range"))


def spec_error(who, code, text, given=None):
    """The exception for a pm_spec failure: the library's line verbatim (the
    same in every front end), after the Python argument it concerns, by its
    Python name and value: "patchmap.windows(padding=(1, 2, 3)): pad: ..."."""
    key = text.partition(": ")[0]
    name = PYTHON_NAME.get(key, key)
    if given and name in given:
        who = "%s(%s=%r)" % (who, name, given[name][0])
    return L.error_with_text(code, "%s: %s" % (who, text))


class Spec:
    """A pm_spec owned by Python (freed by close or a with-block)."""

    def __init__(self, who):
        self.who = who
        self.given = {}
        h = ctypes.c_void_p()
        L.check(L.lib().pm_spec_new(ctypes.byref(h)))
        self.h = h

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        L.lib().pm_spec_free(self.h)
        self.h = None

    def error(self, code):
        return spec_error(self.who, code, L.lib().pm_spec_error(self.h).decode(), self.given)

    def set(self, name, value):
        """Argument `name` (a Python name) from a Python value."""
        if name == "padding":
            key, text = "pad", pad_text(value)[0]
        else:
            key, conv = CONVERT[name]
            text = conv(value, name)
        self.given[name] = (value, text)
        err = L.lib().pm_spec_set(self.h, key.encode(), text.encode())
        if err < 0:
            raise self.error(err)

    def matrix(self, src):
        o = L.pm_matrix_opts()
        info = L.pm_matrix_info()
        err = L.lib().pm_spec_matrix(self.h, ctypes.byref(src), ctypes.byref(o),
                                     ctypes.byref(info))
        if err < 0:
            raise self.error(err)
        return o, info

    def rows(self, o):
        """The spec's row_range as a pm_rows (kind all without it), and the
        matrix info of that selection (pm_spec_rows)."""
        from ._subsets import pm_rows, _declared
        lib = _declared()
        r = pm_rows()
        info = L.pm_matrix_info()
        err = lib.pm_spec_rows(self.h, ctypes.byref(o), ctypes.byref(r), ctypes.byref(info))
        if err < 0:
            raise self.error(err)
        return r, info

    def check_memory(self, info):
        err = L.lib().pm_spec_check_memory(self.h, ctypes.byref(info))
        if err < 0:
            raise self.error(err)


def source_dtype(dt):
    """The library's dtype for a numpy dtype, from its own parser; TypeError
    naming what is supported otherwise."""
    big = ctypes.c_bool(False)
    code = -1
    if dt.fields is None and dt.subdtype is None and dt.kind in "biuf":
        code = L.lib().pm_dtype_parse(dt.str.encode(), ctypes.byref(big))
    if code > 0 and big.value and dt.itemsize > 1:
        raise TypeError("patchmap: the source is byte-swapped (%s); the library reads "
                        "native byte order only: convert it with "
                        "image.astype(image.dtype.newbyteorder(\"=\"))" % dt.str)
    if code <= 0:
        raise TypeError("patchmap: unsupported source dtype %s (the library takes %s; convert "
                        "with image.astype(numpy.float32) for instance)"
                        % (dt, ", ".join(library_dtypes())))
    return code


def library_dtypes():
    """The names of the dtypes the loaded library knows."""
    names, i = [], 1
    while True:
        n = L.lib().pm_dtype_name(i)
        if not n:
            return names
        names.append(n.decode())
        i += 1


def numpy_dtype(code):
    return np.dtype(L.lib().pm_dtype_name(code).decode())


def parse_size(value, what="size"):
    """Bytes as an int, from the size grammar of every patchmap front end
    (the library's pm_size_parse).

    value: an int, or a text such as "4096", "256M", "1.5G", "64 KiB"
        (units K, M, G, T, P are powers of 1024; "i" and "B" optional), which
        must come to whole bytes; "unlimited" (any case) and float("inf")
        give the library's unlimited budget (PM_BUDGET_UNLIMITED).
    what: the name used in error messages (ValueError, TypeError).
    """
    if isinstance(value, float) and value == float("inf"):
        return L.PM_BUDGET_UNLIMITED
    if not isinstance(value, str):
        v = int(_int_text(value, what))
        if v < 0:
            raise ValueError("%s: %d is negative: give a byte count such as 4096 or 256M"
                             % (what, v))
        return v
    out = ctypes.c_size_t()
    err = L.lib().pm_size_parse(value.encode(), True, ctypes.byref(out))
    if err < 0:
        raise L.error_with_text(err, "%s: %r is not a size such as 4096, 256M, 1.5G or "
                                "unlimited (%s)" % (what, value,
                                                    L.lib().pm_strerror(err).decode()))
    return out.value
