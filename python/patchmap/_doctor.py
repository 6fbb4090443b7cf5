"""_doctor.py: patchmap.doctor(), which backends work here and why. The
facts come from the library's pm_system_probe and the text from its
pm_system_report, so that `patchmap doctor` and this print the same."""

import ctypes
import dataclasses
from typing import Dict, Optional

from . import _lib as L


@dataclasses.dataclass(frozen=True)
class BackendProbe:
    """What opening a small region on one backend gave."""

    error: int                   # 0, or the library's negative code
    message: Optional[str]       # pm_strerror of error, None when it worked
    backend: str                 # the backend in force (for auto: the one it took)
    mechanisms: tuple            # how it works, e.g. ("uffd_full", "move", ...)

    @property
    def works(self) -> bool:
        """True when the region opened."""
        return self.error == 0


@dataclasses.dataclass(frozen=True)
class Memory:
    """The memory this process may still take (struct pm_memory): the least
    of the machine's MemAvailable and the memory limits of this process's
    cgroup and its ancestors. The default budget is at most half of it; a
    budget, or an eager matrix, larger than it is refused at open.

    Attributes: available (bytes, None if nothing could be read); kind
    (machine, cgroup_v1, cgroup_max, cgroup_high or unknown: the limit that
    sets it); limit and used (that limit, the cgroup's or MemTotal, and what
    counts against it now); cgroup (of that limit, "" for the machine);
    source (the same in words: "the cgroup memory limit of /job");
    machine_available (MemAvailable alone)."""

    available: Optional[int]       # bytes; None if nothing could be read
    kind: str                      # machine, cgroup_v1, cgroup_max, cgroup_high, unknown
    limit: int                     # that limit: the cgroup's, or MemTotal
    used: int                      # what counts against it now
    cgroup: str                    # the cgroup of that limit ("" for the machine)
    source: str                    # in words: "the cgroup memory limit of /job"
    machine_available: int         # MemAvailable alone


_KINDS = {L.PM_MEMORY_UNKNOWN: "unknown", L.PM_MEMORY_MACHINE: "machine",
          L.PM_MEMORY_CGROUP_V1: "cgroup_v1", L.PM_MEMORY_CGROUP_MAX: "cgroup_max",
          L.PM_MEMORY_CGROUP_HIGH: "cgroup_high"}


def _memory_from(m) -> Memory:
    return Memory(
        available=None if m.kind == L.PM_MEMORY_UNKNOWN else m.available,
        kind=_KINDS.get(m.kind, str(m.kind)), limit=m.limit, used=m.used,
        cgroup=_text(m.cgroup), source=_text(m.source), machine_available=m.machine_available)


def memory_available() -> Memory:
    """What this process may still take, and whose limit says so (the
    library's pm_memory_available): read now, from /proc/meminfo,
    /proc/self/cgroup and the cgroup files of this process's cgroup and its
    ancestors."""
    m = L.pm_memory(size=ctypes.sizeof(L.pm_memory))
    L.check(L.lib().pm_memory_available(ctypes.byref(m)), "memory_available")
    return _memory_from(m)


@dataclasses.dataclass(frozen=True)
class Doctor:
    """The facts of struct pm_system; str() is the report `patchmap doctor`
    prints. Numbers that could not be read are -1, text "".

    Attributes: version (the library's); kernel and machine (uname);
    unprivileged_userfaultfd (the sysctl vm.unprivileged_userfaultfd);
    uffd_full, uffd_user_only and dev_userfaultfd (userfaultfd(2) in full
    mode, in UFFD_USER_MODE_ONLY, and opening /dev/userfaultfd: 0 or
    -errno); uffd_api (UFFDIO_API: 0, or -errno when there is no
    userfaultfd at all); uffd_features (UFFD_FEATURE_* bits); uffd_move,
    uffd_poison and uffd_write_protect (UFFDIO_MOVE, UFFDIO_POISON,
    write-protect faults); thp (always, madvise, never); seccomp (0 none,
    1 strict, 2 filter); backend_env (PATCHMAP_BACKEND, "" unset); backends
    (backend name to what opening a small region on it did); memory (a
    Memory: patchmap.memory_available() at the probe); report (the text)."""

    version: str
    kernel: str
    machine: str
    unprivileged_userfaultfd: int  # the sysctl vm.unprivileged_userfaultfd
    uffd_full: int                 # userfaultfd(2) in full mode: 0 or -errno
    uffd_user_only: int            # userfaultfd(UFFD_USER_MODE_ONLY): 0 or -errno
    dev_userfaultfd: int           # /dev/userfaultfd read-write: 0 or -errno
    uffd_api: int                  # UFFDIO_API: 0, or -errno (no userfaultfd)
    uffd_features: int
    uffd_move: bool
    uffd_poison: bool
    uffd_write_protect: bool
    thp: str                       # always, madvise, never
    seccomp: int                   # 0 none, 1 strict, 2 filter
    backend_env: str               # PATCHMAP_BACKEND ("" unset)
    backends: Dict[str, BackendProbe]
    memory: Memory                 # patchmap.memory_available() at the probe
    report: str

    def __str__(self) -> str:
        return self.report


def _text(b: bytes) -> str:
    return b.decode("utf-8", "replace")


def doctor() -> Doctor:
    """Probes this machine and process as `patchmap doctor` does: kernel,
    userfaultfd each way (system call, user-mode-only, /dev/userfaultfd), the
    sysctl, UFFDIO_MOVE and UFFDIO_POISON, transparent huge pages, seccomp,
    and a small region opened on each backend. Takes no argument; returns a
    Doctor whose str() is the report, with what each missing piece costs and
    the commands that enable it. Raises patchmap.Error if the library
    refuses (it does not for this struct's own size)."""
    lib = L.lib()
    s = L.pm_system(size=ctypes.sizeof(L.pm_system))
    L.check(lib.pm_system_probe(ctypes.byref(s)), "doctor")
    n = L.check(lib.pm_system_report(ctypes.byref(s), None, 0), "doctor")
    buf = ctypes.create_string_buffer(n + 1)
    L.check(lib.pm_system_report(ctypes.byref(s), buf, n + 1), "doctor")
    backends = {}
    for b in range(L.PM_BACKEND_NONE):
        p = s.probe[b]
        name = lib.pm_backend_name(b).decode()
        taken = lib.pm_backend_name(p.backend)
        backends[name] = BackendProbe(
            error=p.err,
            message=_text(lib.pm_strerror(p.err)) if p.err else None,
            backend=taken.decode() if taken else str(p.backend),
            mechanisms=tuple(k for k, bit in L.MECHANISMS.items() if p.mechanism & bit))
    return Doctor(
        version=_text(lib.pm_version()), kernel=_text(s.kernel), machine=_text(s.machine),
        unprivileged_userfaultfd=s.unprivileged_userfaultfd, uffd_full=s.uffd_full,
        uffd_user_only=s.uffd_user_only, dev_userfaultfd=s.dev_userfaultfd,
        uffd_api=s.uffd_api, uffd_features=s.uffd_features, uffd_move=bool(s.uffd_move),
        uffd_poison=bool(s.uffd_poison), uffd_write_protect=bool(s.uffd_write_protect),
        thp=_text(s.thp), seccomp=s.seccomp, backend_env=_text(s.backend_env),
        backends=backends, memory=_memory_from(s.memory), report=_text(buf.value))
