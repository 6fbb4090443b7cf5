"""The ctypes mirror of patchmap.h against the C compiler's view of it: field
names and order parsed from the header, offsets, sizes and constants printed
by tests/pm-abi-dump.c (built by meson; PATCHMAP_ABI_DUMP names it)."""

import ctypes
import os
import re
import subprocess

import pytest

from patchmap import _lib as L
from patchmap import _subsets as S

# The structs mirrored by ctypes: the core's, and the row selections' and
# fold's (patchmap._subsets).
STRUCTS = dict(L.STRUCTS, pm_rows=S.pm_rows, pm_fold_opts=S.pm_fold_opts)


def constant(name):
    """A header constant's Python mirror: in _lib, or _subsets' own."""
    return getattr(L, name) if hasattr(L, name) else getattr(S, name)

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = os.environ.get("PATCHMAP_HEADER",
                        os.path.join(HERE, "..", "..", "include", "patchmap.h"))


def header_structs():
    """{struct name: [field names in order]} for the structs L mirrors."""
    text = open(HEADER).read()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    out = {}
    for name, body in re.findall(r"struct\s+(\w+)\s*\{(.*?)\}\s*;", text, flags=re.S):
        fields = []
        for decl in body.split(";"):
            decl = decl.strip()
            if not decl:
                continue
            # "size_t rows, cols", "struct pm_window window[PM_MAX_DIMS]",
            # "const void *data", "pm_fill_fn fill"
            head, *rest = decl.split(",")
            names = [head.split()[-1]] + [r.strip() for r in rest]
            fields += [re.sub(r"\[.*\]", "", n).lstrip("*") for n in names]
        out[name] = fields
    return out


@pytest.fixture(scope="module")
def dump():
    exe = os.environ.get("PATCHMAP_ABI_DUMP")
    if not exe:
        pytest.skip("PATCHMAP_ABI_DUMP is not set (meson test sets it)")
    lines = subprocess.run([exe], check=True, capture_output=True, text=True).stdout.splitlines()
    d = {"sizeof": {}, "field": {}, "const": {}, "mech": {}}
    for line in lines:
        kind, *rest = line.split()
        if kind == "sizeof":
            d["sizeof"][rest[0]] = (int(rest[1]), int(rest[2]))
        elif kind == "field":
            d["field"].setdefault(rest[0], []).append((rest[1], int(rest[2]), int(rest[3])))
        elif kind == "const":
            d["const"][rest[0]] = int(rest[1])
        elif kind == "mech":
            d["mech"][rest[0]] = int(rest[1])
    return d


@pytest.mark.parametrize("name", sorted(STRUCTS))
def test_fields_match_header(name):
    fields = header_structs()[name]
    assert [f for f, *_ in STRUCTS[name]._fields_] == fields


@pytest.mark.parametrize("name", sorted(STRUCTS))
def test_layout_matches_c(dump, name):
    cls = STRUCTS[name]
    size, align = dump["sizeof"][name]
    assert ctypes.sizeof(cls) == size
    assert ctypes.alignment(cls) == align
    c_fields = dump["field"][name]
    assert [f for f, _, _ in c_fields] == header_structs()[name], "pm-abi-dump.c is stale"
    for field, offset, fsize in c_fields:
        desc = getattr(cls, field)
        assert (desc.offset, desc.size) == (offset, fsize), field


def test_constants_match_c(dump):
    for name, value in dump["const"].items():
        assert constant(name) == value, name
    assert len(dump["const"]) >= 30


def test_mechanism_bits_match_c(dump):
    assert L.MECHANISMS == dump["mech"]
    text = open(HEADER).read()
    in_header = {m.lower() for m in re.findall(r"#define\s+PM_MECH_(\w+)", text)}
    assert in_header == set(L.MECHANISMS)


def test_enums_in_header_are_mirrored():
    """Every PM_E*/PM_DTYPE_/PM_BACKEND_/PM_PAD_/PM_ORDER_/PM_LAYOUT_ enumerator of
    the header has a Python constant (COUNT aside)."""
    text = re.sub(r"/\*.*?\*/", "", open(HEADER).read(), flags=re.S)
    names = set()
    enums = (r"enum\s+pm_(?:error|dtype|backend|pad_mode|order|layout|rows_kind|fold_mode)"
             r"\s*\{(.*?)\}")
    for body in re.findall(enums, text, flags=re.S):
        names |= {n for n in re.findall(r"\b(PM_\w+)", body) if not n.endswith("_COUNT")}
    missing = sorted(n for n in names if not hasattr(L, n) and not hasattr(S, n))
    assert names and not missing, missing
