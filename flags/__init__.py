"""Feature flags kept in Redis and read from a local snapshot. Knows nothing of Flask or RAG serving."""

from flags.bucketing import RESOLUTION, bucket, in_rollout, threshold
from flags.definitions import (
    DEFINITIONS,
    GRADUAL_MIGRATION,
    PARALLEL_RAG,
    PERFORMANCE_LOGGING,
    QUERY_ANALYTICS,
    V2_PERCENTAGE,
    FlagDefinition,
    FlagError,
    FlagKind,
    InvalidFlagValue,
    UnknownFlag,
    definition,
)
from flags.replica import ReplicatedHash, Replicator
from flags.store import FlagChange, FlagNotAudited, FlagSnapshot, FlagStore, Source

__all__ = [
    "DEFINITIONS", "GRADUAL_MIGRATION", "PARALLEL_RAG", "PERFORMANCE_LOGGING", "QUERY_ANALYTICS",
    "RESOLUTION", "V2_PERCENTAGE", "FlagChange", "FlagDefinition", "FlagError", "FlagKind",
    "FlagNotAudited", "FlagSnapshot", "FlagStore", "InvalidFlagValue", "ReplicatedHash", "Replicator", "Source",
    "UnknownFlag", "bucket", "definition", "in_rollout", "threshold",
]
