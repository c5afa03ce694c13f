#!/usr/bin/env python3
"""Resident pages of a running channelgate, per ELF section of its binary.

    sudo bench/resident.py PID [BINARY]

BINARY defaults to /proc/PID/exe. Reads /proc/PID/maps and /proc/PID/pagemap
(root: the present bit of each page) and prints, for every section mapped from
the binary, how many KiB of it are resident; then the anonymous total. What
the issue #16 rounds on memory read (BENCHMARKS.md): which part of the peak
RSS is code, read-only data, relocations, or heap.
"""
import os
import re
import struct
import subprocess
import sys


def sections(binary):
    out = subprocess.run(["readelf", "-SW", binary], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        m = re.match(r"\s+\[\s*\d+\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", line)
        if m and int(m.group(2), 16) > 0:
            found.append((m.group(1), int(m.group(2), 16), int(m.group(3), 16)))
    return found


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    pid = int(sys.argv[1])
    binary = sys.argv[2] if len(sys.argv) > 2 else os.readlink(f"/proc/{pid}/exe")
    secs = sections(binary)
    base, mapped, anon = None, [], 0
    with open(f"/proc/{pid}/smaps") as smaps:
        current = None
        for line in smaps:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                parts = line.split()
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                current = parts[5] if len(parts) > 5 else ""
                if os.path.realpath(current) == os.path.realpath(binary):
                    if base is None:
                        base = lo - int(parts[2], 16)
                    mapped.append((lo, hi))
            elif line.startswith("Anonymous:"):
                anon += int(line.split()[1])
    if base is None:
        sys.exit(f"{binary} is not mapped by {pid}")
    resident = {}
    with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for lo, hi in mapped:
            for page in range(lo, hi, 4096):
                pagemap.seek(page // 4096 * 8)
                if struct.unpack("<Q", pagemap.read(8))[0] >> 63:
                    at = page - base
                    for name, addr, size in secs:
                        if addr < at + 4096 and at < addr + size:
                            resident[name] = resident.get(name, 0) + 4
    for name, _, size in secs:
        if resident.get(name, 0) >= 8:
            print(f"{name:20s} {resident[name]:7d} KiB resident of {size // 1024:7d} KiB")
    print(f"{'anonymous':20s} {anon:7d} KiB (heap, stacks, relocated data)")


if __name__ == "__main__":
    main()
