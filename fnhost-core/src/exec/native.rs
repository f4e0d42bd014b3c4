//! Native executor: Rust closures and async functions registered by name.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use crate::invoke::http::{HttpRequest, HttpResponse};
use crate::invoke::{
    BindingData, BoxFuture, Executor, ExecutorError, FunctionInfo, Invocation, InvocationResult,
};

type NativeFn =
    dyn Fn(Invocation) -> BoxFuture<'static, Result<InvocationResult, ExecutorError>> + Send + Sync;

/// Rust functions registered by function name (compared ignoring case).
///
/// ```
/// use fnhost_core::exec::NativeExecutor;
/// use fnhost_core::invoke::{InvocationResult, http::HttpResponse};
///
/// let native = NativeExecutor::new()
///     .function("Tick", |_inv| async { Ok(InvocationResult::new().with_log("tick")) })
///     .http("Hello", |req| async move {
///         let name = req.query_param("name").unwrap_or("world").to_owned();
///         HttpResponse::text(format!("Hello, {name}!"))
///     });
/// assert!(native.has("hello"));
/// ```
#[derive(Default, Clone)]
pub struct NativeExecutor {
    functions: HashMap<String, Arc<NativeFn>>,
}

impl fmt::Debug for NativeExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.functions.keys().collect();
        names.sort();
        f.debug_struct("NativeExecutor")
            .field("functions", &names)
            .finish()
    }
}

impl NativeExecutor {
    /// No functions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers an async function that takes the whole invocation.
    pub fn function<F, Fut>(mut self, name: &str, f: F) -> Self
    where
        F: Fn(Invocation) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<InvocationResult, ExecutorError>> + Send + 'static,
    {
        let f: Arc<NativeFn> = Arc::new(move |inv| Box::pin(f(inv)));
        self.functions.insert(name.to_ascii_lowercase(), f);
        self
    }

    /// Registers an HTTP function: it takes the request and gives the
    /// response, which goes to the function's `http` output (or `$return`).
    pub fn http<F, Fut>(self, name: &str, f: F) -> Self
    where
        F: Fn(HttpRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HttpResponse> + Send + 'static,
    {
        let f = Arc::new(f);
        self.function(name, move |inv: Invocation| {
            let f = f.clone();
            async move {
                let request = match inv.trigger {
                    BindingData::HttpRequest(r) => *r,
                    other => {
                        return Err(ExecutorError::failed(format!(
                            "an HTTP function needs an HTTP request, got {}",
                            other.to_json()
                        )));
                    }
                };
                Ok(InvocationResult::returning(f(request).await))
            }
        })
    }

    /// Whether a function of that name is registered.
    pub fn has(&self, name: &str) -> bool {
        self.functions.contains_key(&name.to_ascii_lowercase())
    }

    /// An executor bound to the function `name`, resolved once.
    pub(crate) fn bound(&self, name: &str) -> Option<Arc<dyn Executor>> {
        let f = self.functions.get(&name.to_ascii_lowercase())?.clone();
        Some(Arc::new(BoundNative { f }))
    }
}

/// One native function, already looked up.
struct BoundNative {
    f: Arc<NativeFn>,
}

impl fmt::Debug for BoundNative {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BoundNative")
    }
}

impl Executor for BoundNative {
    fn invoke<'a>(
        &'a self,
        function: &'a FunctionInfo,
        invocation: Invocation,
    ) -> BoxFuture<'a, Result<InvocationResult, ExecutorError>> {
        let fut = (self.f)(invocation);
        if function
            .http_output
            .as_deref()
            .is_some_and(|n| n != "$return")
        {
            // An HTTP helper returns its response as `$return`; move it to
            // the function's named `http` output.
            let name = function.http_output.clone().unwrap_or_default();
            return Box::pin(async move {
                let mut result = fut.await?;
                if result.output(&name).is_none()
                    && let Some(BindingData::HttpResponse(r)) = result.return_value.take()
                {
                    result.set_output(name, BindingData::HttpResponse(r));
                }
                Ok(result)
            });
        }
        fut
    }
}
