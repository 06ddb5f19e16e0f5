//! behavior (being built).
