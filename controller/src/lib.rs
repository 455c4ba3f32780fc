//! shg-controller: the local controller, and `shgctl`, the operator's command-line tool.
//!
//! Today it holds the offline OpenFlow tools of `shgctl` (`ofp-print`, `ofp-encode`), which
//! are thin wrappers over `shg-flows`.

pub mod ofp;
