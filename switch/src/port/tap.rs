//! TAP port backend for the LOCAL port (the gateway's own IP stack).
