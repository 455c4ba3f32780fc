//! Switch configuration from command-line flags or a TOML file (same names), validated.
