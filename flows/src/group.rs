//! Group table: group_mod semantics, bucket selection, liveness, counters.
