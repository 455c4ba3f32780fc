//! Tuple-space-search classifier: highest-priority matching rule plus the wildcard mask examined.
