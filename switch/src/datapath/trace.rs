//! Explains a forwarding decision table by table, ending with the final actions (like ofproto/trace).
