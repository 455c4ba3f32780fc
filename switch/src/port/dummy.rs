//! In-memory port backend for tests: frames injected and collected through a handle.
