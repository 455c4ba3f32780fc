//! Flow tables: multi-table pipeline state and OF1.3 flow_mod semantics, timeouts and counters.
