#!/usr/bin/env python3
"""A page-cache ballast: keeps this machine's memory in use, so that a benchmark's writes go
into memory the kernel reclaims from the page cache rather than memory handed back to a host.

This machine is a VM whose balloon reports free pages to its host: memory the guest frees
goes back, and the first write into it runs at about a tenth of the speed of a write into
memory in use (docs/benchmarks.md, "This machine's memory"). Without a ballast, which
memory a workload got would depend on what freed memory before it (a data directory
removed, a server stopped), and the first runs of a window would pay for it.

bench/suite.py uses the class; bench/kafka-perf.sh the command line:

    python3 bench/ballast.py fill DIR     # files as large as the memory, 1 GiB each, synced
    python3 bench/ballast.py top-up DIR   # before each write workload (see Ballast.top_up)
    python3 bench/ballast.py remove DIR   # every ballast file of DIR

Standard library only. The files are named memory-ballast-N.bin; a command finds those an
earlier one wrote in DIR by their names, oldest (smallest N) first."""

import glob
import os
import re
import sys
import time


def meminfo(field):
    """A field of /proc/meminfo, in bytes."""
    with open("/proc/meminfo") as f:
        return int(dict(line.split(":", 1) for line in f)[field].split()[0]) * 1024


def free_page_reporting():
    """Whether a virtio balloon of this VM reports free pages to its host (feature bit 5,
    VIRTIO_BALLOON_F_REPORTING); None where no balloon device is found."""
    found = None
    for path in glob.glob("/sys/bus/virtio/drivers/virtio_balloon/virtio*/features"):
        try:
            with open(path) as f:
                bits = f.read().strip()
        except OSError:
            continue
        found = bool(found) or (len(bits) > 5 and bits[5] == "1")
    return found


class Ballast:
    """Ballast files in `workdir`. `fill` writes new ones (1 GiB each, synced) as large as the
    machine's memory; `top_up`, before each write workload, first removes the files written
    longest ago while the files hold more than one and a half times the memory (their pages
    were the first the kernel dropped), then writes new files as large as what is free, so
    that what the workload finds free is only the kernel's reserve. It never takes the disk's
    last DISK_RESERVE bytes: on a disk too small for that, the ballast is smaller."""

    CHUNK = 1 << 30
    BLOCK = 64 << 20
    # Free disk the ballast always leaves to the workloads: a suite's server holds up to about
    # 15 GB (three nodes: the catch-up backlog and three e2e runs at the half rate, on each
    # node). Without it, a full disk under the ballast failed a suite run's three-node logs.
    DISK_RESERVE = 20 << 30
    NAME = re.compile(r"memory-ballast-(\d+)\.bin$")

    def __init__(self, workdir):
        self.workdir = workdir
        found = []
        for name in os.listdir(workdir):
            m = self.NAME.match(name)
            if m:
                path = os.path.join(workdir, name)
                found.append((int(m.group(1)), path, os.path.getsize(path)))
        found.sort()
        self.files = [(path, size) for _, path, size in found]
        self.next = found[-1][0] + 1 if found else 0
        self.total = meminfo("MemTotal")
        self.written = 0
        self.secs = 0.0

    def disk_free(self):
        st = os.statvfs(self.workdir)
        return st.f_bavail * st.f_frsize

    def write(self, nbytes):
        """Writes `nbytes` (whole blocks) in new files of at most CHUNK bytes, leaving at least
        DISK_RESERVE of the disk free."""
        started = time.monotonic()
        block = bytes(self.BLOCK)
        nbytes = min(nbytes, max(0, self.disk_free() - self.DISK_RESERVE))
        while nbytes >= self.BLOCK:
            path = os.path.join(self.workdir, f"memory-ballast-{self.next}.bin")
            self.next += 1
            size = min(nbytes, self.CHUNK) // self.BLOCK * self.BLOCK
            with open(path, "wb") as f:
                for _ in range(size // self.BLOCK):
                    f.write(block)
                f.flush()
                os.fdatasync(f.fileno())
            self.files.append((path, size))
            nbytes -= size
            self.written += size
        self.secs += time.monotonic() - started

    def fill(self):
        """Fills the page cache; returns a line saying what it did."""
        self.write(self.total)
        return (f"memory: a ballast of {self.written >> 30} GiB fills the page cache ({self.secs:.1f} s; "
                f"free page reporting: {free_page_reporting()})")  # fmt: skip

    def top_up(self):
        while self.files and (sum(size for _, size in self.files) > self.total * 3 // 2
                              or self.disk_free() < self.DISK_RESERVE):  # fmt: skip
            os.unlink(self.files.pop(0)[0])
        free = meminfo("MemFree")
        if free > (256 << 20):
            self.write(free)

    def remove(self):
        for path, _ in self.files:
            if os.path.exists(path):
                os.unlink(path)
        self.files = []

    def report(self):
        return {"memory_bytes": self.total, "written_bytes": self.written, "secs": self.secs,
                "disk_reserve_bytes": self.DISK_RESERVE, "free_page_reporting": free_page_reporting()}  # fmt: skip


def main(argv):
    commands = ("fill", "top-up", "remove")
    if len(argv) != 3 or argv[1] not in commands:
        sys.exit(f"usage: {os.path.basename(argv[0])} {{{'|'.join(commands)}}} DIR\n"
                 "  for example: python3 bench/ballast.py fill /tmp/ballast")  # fmt: skip
    command, workdir = argv[1], argv[2]
    if not os.path.isdir(workdir):
        sys.exit(f"ballast: {workdir} is not a directory; create it first (mkdir -p {workdir})")
    ballast = Ballast(workdir)
    if command == "fill":
        print(ballast.fill(), file=sys.stderr)
    elif command == "top-up":
        ballast.top_up()
    else:
        ballast.remove()


if __name__ == "__main__":
    main(sys.argv)
