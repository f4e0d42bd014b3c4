//! Route templates and the compiled router (placeholder, being written).
