"""Remove what a bench run left behind: Redis keys under given prefixes (the peer
harness does not delete the keys its Pomoc servers wrote) and, with --databases,
leftover `pbench_*` databases of tools that were killed.

    .venv/bin/python bench/cleanup.py --prefix pbench-peer:
    .venv/bin/python bench/cleanup.py --databases          # drop every pbench_* database

Only names under the bench's own namespaces are accepted (prefixes starting with
`pbench`, databases starting with `pbench_`), so this never touches anyone else's data.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_PG, DEFAULT_REDIS, asyncpg_dsn, drop_database, redis_cleanup  # noqa: E402


async def main(a: argparse.Namespace) -> int:
    for prefix in a.prefix:
        if not prefix.startswith("pbench"):
            print(f"refusing prefix {prefix!r}: not a bench namespace (pbench…)")
            return 2
        print(f"redis {prefix}*: {await redis_cleanup(a.redis, prefix)} keys deleted")
    if a.databases:
        import asyncpg

        conn = await asyncpg.connect(asyncpg_dsn(a.pg))
        try:
            names = [r[0] for r in await conn.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE 'pbench\\_%'")]
        finally:
            await conn.close()
        for name in names:
            await drop_database(a.pg, name)
            print(f"dropped database {name}")
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prefix", action="append", default=[], help="Redis key prefix to delete (repeatable)")
    p.add_argument("--databases", action="store_true", help="drop leftover pbench_* databases")
    p.add_argument("--pg", default=DEFAULT_PG)
    p.add_argument("--redis", default=DEFAULT_REDIS)
    sys.exit(asyncio.run(main(p.parse_args())))
