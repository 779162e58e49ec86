"""Summarize a py-spy folded-stack file (`py-spy record --format raw`).

    .venv/bin/python bench/folded.py A.folded [--inclusive PATTERN ...]

Prints the top frames by self time and by inclusive time (% of all samples), and
for each --inclusive pattern the share of samples whose stack contains it.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

GROUPS = {
    "SQLAlchemy (core/engine/pool)": r"sqlalchemy/",
    "asyncpg": r"asyncpg/",
    "redis-py": r"redis/",
    "uvicorn/websockets protocol": r"uvicorn/|websockets/",
    "starlette": r"starlette/",
    "server/ws.py": r"server/ws\.py",
    "server/threads.py": r"server/threads\.py",
    "server/node.py + bus.py": r"server/(node|bus)\.py",
    "server/live.py + unread.py (unread counts)": r"server/(live|unread)\.py",
    "logging": r"logging/|server/logs\.py",
    "asyncio event loop": r"asyncio/|uvloop",
    "orjson/msgpack": r"orjson|msgpack",
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("file")
    p.add_argument("--inclusive", action="append", default=[])
    p.add_argument("--top", type=int, default=20)
    a = p.parse_args()
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    groups: Counter[str] = Counter()
    total = 0
    stacks: list[tuple[list[str], int]] = []
    with open(a.file) as f:
        for line in f:
            line = line.rstrip()
            if not line:
                continue
            stack, _, n = line.rpartition(" ")
            count = int(n)
            frames = stack.split(";")
            total += count
            stacks.append((frames, count))
            self_c[frames[-1]] += count
            for fr in set(frames):
                incl[fr] += count
            for g, pat in GROUPS.items():
                if re.search(pat, stack):
                    groups[g] += count
    if not total:
        print("no samples")
        return
    print(f"samples: {total}")
    print("-- self time")
    for fr, c in self_c.most_common(a.top):
        print(f"{100 * c / total:6.1f}%  {fr}")
    print("-- inclusive (stack contains), frames outside the event loop plumbing")
    shown = 0
    for fr, c in incl.most_common():
        if re.search(r"asyncio/|uvloop|<module>|run \(|_run_once|run_forever|run_until_complete", fr):
            continue
        print(f"{100 * c / total:6.1f}%  {fr}")
        shown += 1
        if shown >= a.top:
            break
    print("-- groups (a sample counts in every group its stack touches)")
    for g, c in groups.most_common():
        print(f"{100 * c / total:6.1f}%  {g}")
    for pat in a.inclusive:
        c = sum(n for frames, n in stacks if any(re.search(pat, fr) for fr in frames))
        print(f"{100 * c / total:6.1f}%  stacks matching {pat!r}")


if __name__ == "__main__":
    main()
