"""What a Python thread that wakes now and then costs the other threads' system calls.

The journal's group commit was a Python thread that woke every `store.journal_sync_interval_s`
(10 ms) while records flowed (a child process since stop 28: docs/design.md, "The
journal's syncer"). On this project's 2-core VM, while such a thread exists, every call
that lets go of the GIL (`os.write`, and grpcio's own calls into its core) costs the
serving thread about 15 µs more, and not only at the moment the thread wakes: most calls
made between its wakes are slow too. (In the served sidecar that cost did not show: the
thread and the process measured the same CPU per message; benchmarks/README.md.)

This measures it without the sidecar: one thread appends a 120-byte record to a file with
`os.write`, 0.1 ms apart, while another thread does nothing, sleeps and wakes every 10 or
100 ms, or is blocked for good; and the same with the write made through ctypes.PyDLL,
which keeps the GIL.

    python benchmarks/gil_wake.py [--seconds S]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import tempfile
import threading
import time
from collections.abc import Callable

RECORD = b"x" * 120
GAP_S = 0.0001  # between two writes: a busy loop, as a serving thread between answers


def _gil_held_write() -> Callable[[int, bytes], int]:
    libc = ctypes.PyDLL(None)  # PyDLL: the GIL stays held during the call
    write = libc.write
    write.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t)
    write.restype = ctypes.c_ssize_t
    return lambda fd, data: write(fd, data, len(data))


def measure(path: str, seconds: float, write: Callable[[int, bytes], int],
            other: Callable[[threading.Event], None] | None) -> list[int]:
    """Latencies (ns) of `write` of RECORD to a fresh file at `path`, while `other` runs
    on a thread of its own (until the event is set)."""
    stop = threading.Event()
    thread = threading.Thread(target=other, args=(stop,), daemon=True) if other else None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    try:
        if thread:
            thread.start()
        clock, latencies = time.perf_counter_ns, []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            start = clock()
            write(fd, RECORD)
            latencies.append(clock() - start)
            pause = time.perf_counter() + GAP_S
            while time.perf_counter() < pause:
                pass
    finally:
        stop.set()
        if thread:
            thread.join()
        os.close(fd)
    return sorted(latencies)


def waking(every_s: float) -> Callable[[threading.Event], None]:
    def run(stop: threading.Event) -> None:
        while not stop.wait(every_s):
            pass
    return run


def blocked(stop: threading.Event) -> None:
    stop.wait()  # never wakes until the measurement ends


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per row")
    args = parser.parse_args()
    gil_held = _gil_held_write()
    rows = [("os.write", os.write, "no other thread", None),
            ("os.write", os.write, "a thread blocked for good", blocked),
            ("os.write", os.write, "a thread waking every 100 ms", waking(0.1)),
            ("os.write", os.write, "a thread waking every 10 ms", waking(0.01)),
            ("write, GIL held (ctypes)", gil_held, "no other thread", None),
            ("write, GIL held (ctypes)", gil_held, "a thread waking every 10 ms", waking(0.01))]
    print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; a 120-byte append every"
          f" {GAP_S * 1e3:g} ms for {args.seconds:g} s per row\n")
    print(f"{'write':<26} {'while':<30} {'p50 µs':>7} {'p90 µs':>7} {'p99 µs':>7}")
    with tempfile.TemporaryDirectory(prefix="ess-gil-wake-") as tmp:
        for name, write, label, other in rows:
            values = measure(os.path.join(tmp, "journal"), args.seconds, write, other)
            n = len(values)
            print(f"{name:<26} {label:<30} {values[n // 2] / 1e3:7.1f}"
                  f" {values[int(n * .9)] / 1e3:7.1f} {values[int(n * .99)] / 1e3:7.1f}")


if __name__ == "__main__":
    main()
