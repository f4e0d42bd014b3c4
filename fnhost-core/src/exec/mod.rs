//! Executors: native Rust functions, and (feature `tokio`) one-shot
//! processes and Azure-compatible custom handlers.

mod native;

pub use native::NativeExecutor;
