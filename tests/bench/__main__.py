"""`python -m tests.bench NAME [options]`: runs one benchmark by name.

A benchmark is a module of this package with `main(argv) -> int`; add it to BENCHMARKS.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "ingest": ("tests.bench.bench_ingest", "CPU per stream: golive's RTMP ingest vs nginx-rtmp"),
    "delivery": (
        "tests.bench.bench_delivery",
        "LL-HLS: latency in Chromium, blocked playlist wake-up, blocked requests held",
    ),
    "chat": (
        "tests.bench.bench_chat",
        "chat fan-out per process: golive's pub/sub + queues vs channels_redis groups",
    ),
    "surge": (
        "tests.bench.bench_surge",
        "viewers through the edge vs straight to the origin; publishers vs the quota",
    ),
    "transcode": (
        "tests.bench.bench_transcode",
        "CPU per media second of the 1080p ladder: golive's engine vs the ffmpeg CLI",
    ),
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BENCHMARKS:
        print("usage: python -m tests.bench NAME [options]   (NAME --help for its options)")
        for name, (_module, summary) in BENCHMARKS.items():
            print(f"  {name:<10} {summary}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module_name, _summary = BENCHMARKS[argv[0]]
    module = importlib.import_module(module_name)
    return int(module.main(argv[1:]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
