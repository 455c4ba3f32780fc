//! Splits GSO frames into wire-size frames in software (for shaped ports).
