//! The OpenFlow agent: controller connections and listeners (TCP/TLS) on tokio, driving `Ofproto`.
