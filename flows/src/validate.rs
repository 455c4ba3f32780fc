//! Prerequisite and consistency checks for matches, actions and instructions, with OF1.3 error codes.
