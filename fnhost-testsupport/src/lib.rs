//! Helpers shared by fnhost's integration tests across crates: a small
//! function app, git repositories, a running process whose output is kept,
//! and plain HTTP/1.1 requests on fresh connections.
//!
//! Every wait is bounded and every failure panics with what was seen, so a
//! test that uses these never hangs and says why it failed. Not published.

#![allow(clippy::unwrap_used)] // test code: a failed step panics with its context

pub mod app;
pub mod git;
pub mod http;
pub mod process;
pub mod tls;

pub use process::Running;
