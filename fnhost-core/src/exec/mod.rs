//! Executors: native Rust functions, and (feature `tokio`) one-shot
//! processes and Azure-compatible custom handlers.

#[cfg(feature = "tokio")]
mod custom_handler;
mod native;
#[cfg(feature = "tokio")]
mod payload;
#[cfg(feature = "tokio")]
pub(crate) mod process;

#[cfg(feature = "tokio")]
pub use custom_handler::{
    CustomHandlerExecutor, CustomHandlerFactory, CustomHandlerOptions, DEFAULT_READINESS_TIMEOUT,
    HOST_VERSION, HandlerStream, LogSink,
};
pub use native::NativeExecutor;
#[cfg(feature = "tokio")]
pub use payload::{PAYLOAD_SHAPE_SETTING, PayloadShape, random_guid};
#[cfg(feature = "tokio")]
pub use process::{
    DEFAULT_MAX_STDERR, DEFAULT_MAX_STDOUT, ProcessExecutor, ProcessExecutorFactory,
};

impl crate::invoke::HostBuilder {
    /// Adds the default executor factories, asked after any added before:
    /// the custom handler when host.json configures one
    /// ([`CustomHandlerFactory`]), then (feature `workers`) the language
    /// worker of the app's `FUNCTIONS_WORKER_RUNTIME`
    /// (`crate::worker::LanguageWorkerFactory`), then the one-shot process
    /// executor for functions with a primary script
    /// ([`ProcessExecutorFactory`]).
    #[cfg(feature = "tokio")]
    pub fn with_default_executors(self) -> Self {
        let builder = self.factory(std::sync::Arc::new(CustomHandlerFactory::new()));
        #[cfg(feature = "workers")]
        let builder = builder.factory(std::sync::Arc::new(
            crate::worker::LanguageWorkerFactory::new(),
        ));
        builder.factory(std::sync::Arc::new(ProcessExecutorFactory::new()))
    }
}
