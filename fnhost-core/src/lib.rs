//! fnhost-core: function apps as the Azure Functions host reads them.
//!
//! See the crate README for an overview.

pub mod route;
pub mod schedule;
