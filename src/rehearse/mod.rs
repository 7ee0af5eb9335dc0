//! rehearse (being built).
