#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod app;
pub mod binding;
pub mod build;
pub mod diag;
pub mod exec;
mod forward;
#[cfg(feature = "http")]
pub mod http;
pub mod invoke;
mod json;
pub mod keys;
pub mod route;
pub mod scaffold;
pub mod schedule;
pub mod source;
#[cfg(feature = "tokio")]
pub mod task;
#[cfg(feature = "testkit")]
pub mod testkit;
#[cfg(feature = "tokio")]
pub mod timer;
pub mod timespan;
#[cfg(feature = "workers")]
pub mod worker;

pub use app::{Function, FunctionApp, FunctionConfig, HostConfig, IndexedFunction, LoadError};
pub use binding::{Binding, BindingKind, Direction};
pub use diag::{Code, Diagnostic, Diagnostics, Severity};
pub use exec::NativeExecutor;
pub use invoke::{
    Executor, FunctionHandle, Host, HostBuilder, Invocation, InvocationResult, InvokeError,
};
pub use route::{Method, MethodSet, RouteTemplate, Router};
pub use schedule::Schedule;
