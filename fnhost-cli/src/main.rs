//! The `fnhost` command.
fn main() {}
