"""patchmap demo --small: the quick run of the demo, on every lazy backend.
The demo checks its own responses against sums computed from the image;
these tests hold it to its report."""

import json
import subprocess

import pytest

from conftest import run


def test_small(exe):
    out = run(exe, "demo", "--small").stdout
    lines = out.splitlines()
    assert lines[-1] == "checksum ok"
    assert "equal the exact integer sums from the image" in out
    assert "within tolerance" in out
    assert "peak RSS" in out and "stayed under budget + margin" in out


@pytest.mark.parametrize("backend", ["uffd", "sigsegv"])
def test_small_json(exe, backend):
    rep = json.loads(run(exe, "demo", "--small", "--json", "--backend", backend,
                         "--budget", "64M").stdout)
    assert rep["command"] == "demo"
    assert rep["lazy"]["backend"] == backend
    assert rep["matrix"]["bytes"] == 625 * 625 * 256 * 4
    assert rep["check"]["ok"] and rep["check"]["sums_ok"] and rep["check"]["sample_ok"]
    assert rep["check"]["non_integer_or_out_of_bound"] == 0
    assert rep["check"]["checksum"] == rep["check"]["checksum_expected"]
    assert rep["rss_within_bound"] or not rep["rss_bound_enforced"]  # ThreadSanitizer
    assert rep["lazy"]["evictions"] > 0  # a 381 MiB matrix under a 64 MiB budget
    assert rep["lazy"]["peak_resident_bytes"] <= 64 << 20


def test_quiet(exe):
    assert run(exe, "demo", "--small", "--quiet", "--nfilters", "3", "--window", "7").stdout == ""


@pytest.mark.parametrize("kind", ["value", "swap", "nan"])
def test_checks_catch_spoiled_responses(exe, kind):
    """The demo's checks can fail: one response off by one, two windows'
    responses exchanged (the plain sum stays the same), a NaN."""
    p = subprocess.run([exe, "demo", "--small", "--json", "--inject-error", kind],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 1
    assert p.stderr == "patchmap: demo: the responses do not match the independent " \
                       "computation\n"
    check = json.loads(p.stdout)["check"]
    assert not check["ok"] and not check["sums_ok"] and not check["sample_ok"]
    assert check["checksum"] != check["checksum_expected"]
    if kind == "swap":
        assert check["sum"] == check["sum_expected"]
    if kind == "nan":
        assert check["non_integer_or_out_of_bound"] == 1
