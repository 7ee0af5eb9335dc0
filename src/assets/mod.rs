//! assets (being built).
