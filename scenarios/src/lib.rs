//! shg-scenario: declarative network scenarios in namespaces, with assertions and reports.
//!
//! Drives the shg binaries and APIs as a user would; never depends on switch or controller
//! internals. The runner arrives with the scenarios issue.
