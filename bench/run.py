"""`make bench`: run every benchmark module in bench/ and print one table of figures (no pass/fail)."""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def main() -> int:
    modules = sorted(p.stem for p in HERE.glob("bench_*.py"))
    print(f"orchestrate-kit benchmarks, {time.strftime('%Y-%m-%d %H:%M')}")
    for name in modules:
        print(f"\n== {name[len('bench_'):]}")
        started = time.monotonic()
        for label, figure in importlib.import_module(name).run():
            print(f"  {label:58} {figure}")
        print(f"  ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
