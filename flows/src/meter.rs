//! Meter table: meter_mod semantics and token-bucket bands driven by `now`.
