//! fnhost-deploy: continuous deployment of function apps.

pub mod build;
pub mod source;
