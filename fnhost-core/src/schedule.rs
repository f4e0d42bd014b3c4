//! Timer schedules (placeholder, being written).
