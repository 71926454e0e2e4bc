"""`rollout migrate verify`: is each version's corpus complete and sound, and does it retrieve?

Per version: every document has a vector of its current text by the configured
model (per category), no vector without a document, the declared and actual
dimensions agree with the settings, no NULL, NaN or zero vectors, norms are 1
(every path that stores vectors normalises them), the HNSW index is there. Then
sample queries: the titles of random documents, asked of each version; a version
should find the document itself (self-retrieval), and the share of the baseline's top k
that the candidate also returns (overlap) says how alike the two rank.

What verify can see is bounded by what PostgreSQL lets exist: a `vector(768)`
column holds nothing else, and pgvector refuses NaN on input; a wrong dimension or
a NaN shows up only in a table altered or written around pgvector's checks, which
is exactly the damage worth finding.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import psycopg

from rollout.backends import SearchFailed
from rollout.embedders import EmbeddingError
from rollout.migration.index import VectorIndex
from rollout.migration.status import category_counts, table_exists
from rollout.schema import table_dimensions
from rollout.version_spec import VersionSettings

EXAMPLES = 5


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    version: str | None = None


@dataclass
class VerifyReport:
    checks: list[Check] = field(default_factory=list)
    retrieval: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [check for check in self.checks if not check.ok]

    def as_json(self) -> dict:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks], "retrieval": self.retrieval}


def _ids(rows) -> str:
    shown = ", ".join(str(r[0]) for r in rows[:EXAMPLES])
    return shown + (", ..." if len(rows) > EXAMPLES else "")


class Verifier:
    def __init__(self, runtime, *, sample: int = 50, k: int = 10, min_self_retrieval: float = 0.8,
                 norm_tolerance: float = 1e-3, seed: str = "rollout", versions: list[str] | None = None):
        self.runtime = runtime
        # default: the rollout's baseline and candidate
        self.versions = versions or [name for name in runtime.router.roles if name is not None]
        self.sample = sample
        self.k = k
        self.min_self_retrieval = min_self_retrieval
        self.norm_tolerance = norm_tolerance
        self.seed = seed

    def run(self) -> VerifyReport:
        report = VerifyReport()
        with self.runtime.pool.connection() as conn:
            conn.execute("SELECT set_config('statement_timeout', '0', false)")
            try:
                for name in self.versions:
                    report.checks += self._check_version(conn, self.runtime.version(name))
            finally:
                conn.execute("SELECT set_config('statement_timeout', %s, false)",
                             (f"{self.runtime.settings.search_timeout_ms}ms",))
            samples = conn.execute("SELECT id, title FROM documents ORDER BY md5(id || %s) LIMIT %s",
                                   (self.seed, self.sample)).fetchall()
        if samples:
            report.checks += self._sample_queries(samples, report.retrieval)
        return report

    # -- the table ---------------------------------------------------------------------------
    def _check_version(self, conn: psycopg.Connection, version: VersionSettings) -> list[Check]:
        name, table = version.version, version.table
        if not table_exists(conn, table):
            return [Check("table", False, f"{table} does not exist (run `rollout db upgrade`)", name)]
        checks = [self._dimensions(conn, version), self._index(conn, version)]
        checks += self._counts(conn, version)
        orphans = conn.execute(f"SELECT e.document_id FROM {table} e LEFT JOIN documents d ON d.id = e.document_id "
                               "WHERE d.id IS NULL ORDER BY 1").fetchall()
        checks.append(Check("orphans", not orphans,
                            f"{len(orphans)} vectors without a document: {_ids(orphans)}" if orphans
                            else "every vector has its document", name))
        checks.append(self._vectors(conn, version))
        return checks

    def _dimensions(self, conn: psycopg.Connection, version: VersionSettings) -> Check:
        declared = table_dimensions(conn, version.table)
        wrong = conn.execute(f"SELECT document_id, vector_dims(embedding) FROM {version.table} "
                             "WHERE vector_dims(embedding) <> %s ORDER BY 1", (version.dimensions,)).fetchall()
        problems = []
        if declared != version.dimensions:
            shown = "no dimension" if declared is None or declared < 0 else f"vector({declared})"
            problems.append(f"the column is declared with {shown}, the settings say {version.dimensions}")
        if wrong:
            sizes = sorted({r[1] for r in wrong})
            problems.append(f"{len(wrong)} vectors of {', '.join(map(str, sizes))} dimensions instead of "
                            f"{version.dimensions}: {_ids(wrong)}")
        return Check("dimensions", not problems, "; ".join(problems) or f"vector({version.dimensions})",
                     version.version)

    def _index(self, conn: psycopg.Connection, version: VersionSettings) -> Check:
        state = VectorIndex(version).state(conn)
        if state.searchable:
            return Check("index", True, f"HNSW: {', '.join(state.indexes)}", version.version)
        if state.awaiting_rebuild:
            detail = (f"{', '.join(state.awaiting_rebuild)} was dropped for a bulk load and not built again: "
                      "run `rollout migrate run` (or `rollout migrate setup`)")
        elif state.invalid:
            detail = f"invalid index: {', '.join(state.invalid)}"
        else:
            detail = "no HNSW index: searches scan the whole table (run `rollout migrate setup`)"
        return Check("index", False, detail, version.version)

    def _counts(self, conn: psycopg.Connection, version: VersionSettings) -> list[Check]:
        checks = []
        for c in category_counts(conn, version):
            missing = c.total - c.embedded
            stale = c.embedded - c.done
            ok = c.done == c.total
            detail = f"{c.done} of {c.total} current"
            if not ok:
                parts = [f"{missing} missing"] if missing else []
                parts += [f"{stale} of an older text"] if stale else []
                parts += [f"{c.failed} refused by the provider"] if c.failed else []
                detail += f" ({', '.join(parts)})"
            checks.append(Check(f"count[{c.category}]", ok, detail, version.version))
        other_model = conn.execute(f"SELECT model, count(*) FROM {version.table} WHERE model <> %s "
                                   "GROUP BY 1 ORDER BY 2 DESC", (version.model,)).fetchall()
        if other_model:
            models = ", ".join(f"{n} by {m}" for m, n in other_model)
            checks.append(Check("model", False, f"vectors of another model than {version.model}: {models}",
                                version.version))
        failures = conn.execute("SELECT f.document_id, f.reason FROM embedding_failures f "
                                "JOIN documents d ON d.id = f.document_id AND d.content_hash = f.content_hash "
                                "WHERE f.version = %s ORDER BY 1", (version.version,)).fetchall()
        if failures:
            shown = "; ".join(f"{r[0]}: {r[1]}" for r in failures[:EXAMPLES])
            checks.append(Check("failures", False, f"{len(failures)} documents refused: {shown}", version.version))
        return checks

    def _vectors(self, conn: psycopg.Connection, version: VersionSettings) -> Check:
        row = conn.execute(f"""
            SELECT count(*) FILTER (WHERE embedding IS NULL),
                   count(*) FILTER (WHERE n = 'NaN'::float8),
                   count(*) FILTER (WHERE n = 0),
                   count(*) FILTER (WHERE n <> 'NaN'::float8 AND n > 0 AND abs(n - 1) > %s),
                   min(n) FILTER (WHERE n <> 'NaN'::float8 AND n > 0),
                   max(n) FILTER (WHERE n <> 'NaN'::float8),
                   array_agg(document_id ORDER BY document_id) FILTER (
                       WHERE embedding IS NULL OR n = 'NaN'::float8 OR n = 0 OR abs(n - 1) > %s)
            FROM (SELECT document_id, embedding, vector_norm(embedding) AS n FROM {version.table}) v""",
                           (self.norm_tolerance, self.norm_tolerance)).fetchone()
        nulls, nans, zeros, off, low, high, ids = row
        problems = []
        if nulls:
            problems.append(f"{nulls} NULL")
        if nans:
            problems.append(f"{nans} with NaN")
        if zeros:
            problems.append(f"{zeros} all zero")
        if off:
            problems.append(f"{off} not of unit length (norms {low:.4g} to {high:.4g})")
        if problems:
            return Check("vectors", False, f"{', '.join(problems)}: {_ids([(i,) for i in ids or []])}",
                         version.version)
        return Check("vectors", True, "no NULL, NaN or zero vectors; unit norms", version.version)

    # -- retrieval -----------------------------------------------------------------------------
    def _sample_queries(self, samples: list[tuple[str, str]], retrieval: dict) -> list[Check]:
        checks, results = [], {}
        titles = [title for _, title in samples]
        for name in self.versions:
            backend = self.runtime.backends[name]
            try:
                vectors = backend.embedder.embed(titles)
                results[name] = [[hit.id for hit in backend.search_vector(v, self.k)] for v in vectors]
            except (EmbeddingError, SearchFailed) as exc:
                checks.append(Check("self-retrieval", False, f"sample queries failed: {exc}", name))
                continue
            pairs = list(zip(samples, results[name], strict=False))
            at_k = sum(doc_id in ids for (doc_id, _), ids in pairs) / len(samples)
            at_1 = sum(ids[:1] == [doc_id] for (doc_id, _), ids in pairs) / len(samples)
            retrieval[name] = {"queries": len(samples), f"self_at_{self.k}": round(at_k, 4),
                               "self_at_1": round(at_1, 4)}
            checks.append(Check("self-retrieval", at_k >= self.min_self_retrieval,
                                f"{at_k:.0%} of {len(samples)} titles find their document in the top {self.k} "
                                f"({at_1:.0%} first); minimum {self.min_self_retrieval:.0%}", name))
        if len(self.versions) > 1 and all(name in results for name in self.versions) and self.k:
            first, second = (results[name] for name in self.versions[:2])
            overlap = sum(len(set(a) & set(b)) for a, b in zip(first, second, strict=False)) / (self.k * len(samples))
            retrieval["overlap"] = {f"top_{self.k}": round(overlap, 4)}
            checks.append(Check("overlap", True, f"{' and '.join(self.versions[:2])} share {overlap:.0%} of their "
                                                 f"top {self.k} "
                                                 "(informational: models rank differently)"))
        return checks
