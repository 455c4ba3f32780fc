//! shg-controller: the local controller, and `shgctl`, the operator's command-line tool.
//!
//! Today it holds `shgctl`'s commands: the offline OpenFlow tools (`ofp-print`, `ofp-encode`,
//! thin wrappers over `shg-flows`) and the client of shg-switch's control socket
//! (`shgctl switch ...`). The controller itself arrives with the controller issue.

pub mod ofp;
pub mod switch_ctl;
