//! The control socket: serves `shgctl switch dump-flows|dump-ports|dump-groups|dump-meters|trace`.
