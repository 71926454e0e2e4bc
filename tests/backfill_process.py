"""A backfill in its own process that SIGKILLs itself at a chosen point (for the resume tests).

    python backfill_process.py VERSION POINT N

POINT is where the process dies, on its N-th passage:
  embed   after claiming a batch, while embedding (the batch's transaction is open)
  staged  after the COPY into the staging table, before the vectors move into the table
  merged  after the vectors moved in, before the batch commits
  batch   after a batch committed (between batches)
  index   when the HNSW index build is sent (after the load, the index dropped)
DATABASE_URL and REDIS_URL come from the environment, like everything else.
"""

from __future__ import annotations

import os
import signal
import sys

import psycopg

from rollout.config import Settings
from rollout.configured import backfill_options
from rollout.migration.backfill import backfill_for
from rollout.migration.loader import EmbeddingLoader
from rollout.runtime import Runtime


def main() -> None:
    version, point, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
    passages = {"count": 0}

    def maybe_die(here: str) -> None:
        if here == point:
            passages["count"] += 1
            if passages["count"] >= nth:
                os.kill(os.getpid(), signal.SIGKILL)

    settings = Settings.load(env_file=None)
    runtime = Runtime(settings, settings.database_url, settings.redis_url, pool_size=2)
    runtime.sync()
    options = backfill_options(settings, batch_size=20, workers=1, index="rebuild")
    job = backfill_for(runtime, version, options, progress=lambda n: maybe_die("batch"))

    embed = job.embedder.embed
    job.embedder.embed = lambda texts: (maybe_die("embed"), embed(texts))[1]

    class DyingLoader(EmbeddingLoader):
        def stage(self, conn, rows):
            super().stage(conn, rows)
            maybe_die("staged")

        def merge(self, conn):
            stored = super().merge(conn)
            maybe_die("merged")
            return stored

    job.loader = DyingLoader(job.loader.table, job.loader.model)
    execute = psycopg.Connection.execute

    def dying_execute(self, query, *args, **kwargs):
        if isinstance(query, str) and query.startswith("CREATE INDEX"):
            maybe_die("index")
        return execute(self, query, *args, **kwargs)

    psycopg.Connection.execute = dying_execute
    report = job.run()
    print(f"finished without dying: {report.as_json()}", file=sys.stderr)
    runtime.close()
    sys.exit(3)


if __name__ == "__main__":
    main()
