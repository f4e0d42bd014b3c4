//! The invoke pipeline: trigger, input bindings, executor, output bindings.
//!
//! A [`Host`] holds the current [`AppVersion`] (a loaded app with an
//! executor bound to each function) behind an atomic pointer. Callers
//! resolve a function to a [`FunctionHandle`] once and invoke it as often as
//! they like; a new version can be swapped in at any time, and invocations
//! already running finish on the version they started on.
//!
//! Around the executor, each invocation gets, from the outside in:
//!
//! 1. the retry policy (function.json `retry`, else host.json `retry`):
//!    failed, timed-out and panicked attempts are tried again after the
//!    policy's delay;
//! 2. the function timeout (host.json `functionTimeout`, 30 minutes when not
//!    set): the attempt's future, middleware included, is dropped when it
//!    expires, which cancels it (a process is killed, a request to a
//!    handler is abandoned);
//! 3. the embedder's [`Middleware`], in the order added;
//! 4. a panic guard: a panicking native function is a failed invocation.
//!
//! Timeouts and retry delays need a Tokio runtime (the `tokio` feature and a
//! runtime on the calling thread); without one, timeouts are not enforced
//! and retries happen at once.

mod data;
pub mod http;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use tracing::Instrument as _;

pub use data::{
    BindingData, ExecutorError, Invocation, InvocationId, InvocationResult, InvokeError,
};

use crate::app::{AppSettings, Function, FunctionApp, FunctionTimeout, HostConfig, RetryPolicy};
use crate::binding::Direction;

/// A boxed future that can move between threads.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The function timeout when host.json sets none.
pub const DEFAULT_FUNCTION_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Runs invocations of functions.
///
/// # Contract
///
/// - [`Executor::invoke`] runs one invocation of `function` and resolves to
///   its result, or to an [`ExecutorError`]. It must not panic across the
///   future; if it does, the pipeline reports a failed invocation.
/// - Dropping the returned future cancels the invocation: the executor
///   stops the work it started (kills a process, abandons a request).
/// - An executor is shared by many concurrent invocations.
/// - [`Executor::start`] is awaited once before the first invocation of an
///   app version, and [`Executor::shutdown`] once after its last; both do
///   nothing by default.
///
/// `fnhost_core::testkit` (feature `testkit`) has a conformance suite for
/// executors.
pub trait Executor: Send + Sync + fmt::Debug {
    /// Runs one invocation.
    fn invoke<'a>(
        &'a self,
        function: &'a FunctionInfo,
        invocation: Invocation,
    ) -> BoxFuture<'a, Result<InvocationResult, ExecutorError>>;

    /// Prepares to run invocations (for example starts a process).
    fn start(&self) -> BoxFuture<'_, Result<(), ExecutorError>> {
        Box::pin(async { Ok(()) })
    }

    /// Stops, after the last invocation.
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// The functions this executor found in the app when it started, that
    /// the app's folder does not declare (Azure's worker indexing); none by
    /// default. Asked of an [`ExecutorFactory::indexing_executor`] after its
    /// start.
    fn indexed_functions(&self) -> Vec<crate::app::IndexedFunction> {
        Vec::new()
    }
}

crate::forward_impls! {
    impl<E> Executor for [Arc<E>, Box<E>] {
        fn invoke<'a>(&'a self, function: &'a FunctionInfo, invocation: Invocation) -> BoxFuture<'a, Result<InvocationResult, ExecutorError>>;
        fn start(&self) -> BoxFuture<'_, Result<(), ExecutorError>>;
        fn shutdown(&self) -> BoxFuture<'_, ()>;
        fn indexed_functions(&self) -> Vec<crate::app::IndexedFunction>;
    }
}

/// Chooses executors for the functions of an app version.
///
/// The host asks its factories in order; the first to give a function an
/// executor wins. A factory returns one entry per function of
/// [`FunctionApp::functions`] (`None`: not mine), so it can share one
/// executor (such as one custom handler process) among functions.
///
/// # Contract
///
/// - [`ExecutorFactory::executors`] and
///   [`ExecutorFactory::indexing_executor`] are called each time the host
///   binds an app version: when it is built, on each
///   [`Host::swap`](crate::invoke::Host::swap), and once more after an
///   indexing executor has started (the app then has the functions it
///   found). They only choose: they start nothing, block on nothing (they
///   run on the caller's async task) and do not panic. A factory that has
///   nothing to offer returns `None`s, or an empty list.
/// - `executors` returns at most one entry per function of
///   [`FunctionApp::functions`], in that order; missing entries are `None`
///   and extra ones are ignored. A factory is not asked once every function
///   has an executor, so it must not count on being called.
/// - Functions that share an executor share one `Arc`: the host starts and
///   shuts down each distinct executor (compared with [`Arc::ptr_eq`]) once
///   per app version. An executor handed to two versions is started and
///   shut down once for each, so return new executors unless yours can
///   start again after a shutdown.
/// - `indexing_executor` offers an executor for the whole app that finds
///   functions the app's folder does not declare (Azure's worker indexing).
///   The first factory to offer one wins and later factories are not asked.
///   The host awaits its [`Executor::start`] first (on failure its
///   [`Executor::shutdown`], and the swap fails), reads
///   [`Executor::indexed_functions`] once, and gives it every function that
///   no override or native function claims, before other factories are
///   asked. Return `None` quickly for apps you cannot index (look at a file,
///   not at a process).
/// - Both may be called from several threads at once.
pub trait ExecutorFactory: Send + Sync + fmt::Debug {
    /// The executors for `app`'s functions, in order.
    fn executors(&self, app: &FunctionApp) -> Vec<Option<Arc<dyn Executor>>>;

    /// An executor for the whole app that may also find functions the
    /// app's folder does not declare (Azure's worker indexing: Python v2
    /// and Node.js v4 apps declare functions in code). The first factory to
    /// offer one wins; the host starts it before the app version is bound,
    /// adds its [`Executor::indexed_functions`] to the app, and runs every
    /// function no override or native function claims with it. `None` by
    /// default.
    fn indexing_executor(&self, _app: &FunctionApp) -> Option<Arc<dyn Executor>> {
        None
    }
}

crate::forward_impls! {
    impl<F> ExecutorFactory for [Arc<F>, Box<F>] {
        fn executors(&self, app: &FunctionApp) -> Vec<Option<Arc<dyn Executor>>>;
        fn indexing_executor(&self, app: &FunctionApp) -> Option<Arc<dyn Executor>>;
    }
}

/// Code that runs around every attempt of an invocation: logging, metrics,
/// authorisation, a cache...
///
/// Call `next.run(invocation)` to go on (or don't, to answer yourself). A
/// closure will do: see [`middleware_fn`].
///
/// # Contract
///
/// - [`Middleware::call`] handles one attempt: with a retry policy, it is
///   called again for each retry (see [`Invocation::retry_count`]).
/// - It calls `next.run` at most once. It may change the invocation before
///   and the result or error after; it may answer without calling `next`
///   (the executor then does not run).
/// - It runs inside the attempt's timeout: when the timeout passes, its
///   future is dropped at its next await, like the executor's; anything it
///   holds must be safe to drop there (no lock held across an await that a
///   drop would leave inconsistent).
/// - It must not panic: the panic guard is around the executor only, so a
///   panic in a middleware unwinds through the caller of the invocation.
/// - It must not block the thread; it is shared by every concurrent
///   invocation of every function, so state it keeps is synchronised.
/// - Middleware runs in the order added to the [`HostBuilder`], the first
///   added outermost.
pub trait Middleware: Send + Sync + fmt::Debug {
    /// Handles one attempt of an invocation.
    fn call<'a>(
        &'a self,
        function: &'a FunctionInfo,
        invocation: Invocation,
        next: Next<'a>,
    ) -> BoxFuture<'a, Result<InvocationResult, InvokeError>>;
}

crate::forward_impls! {
    impl<M> Middleware for [Arc<M>, Box<M>] {
        fn call<'a>(&'a self, function: &'a FunctionInfo, invocation: Invocation, next: Next<'a>) -> BoxFuture<'a, Result<InvocationResult, InvokeError>>;
    }
}

/// A [`Middleware`] made of a closure: the closure gets the function, the
/// invocation and the rest of the pipeline, and returns a boxed future.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// use fnhost_core::invoke::{Host, middleware_fn};
///
/// let attempts = Arc::new(AtomicUsize::new(0));
/// let counted = attempts.clone();
/// let counting = middleware_fn(move |function, invocation, next| {
///     let counted = counted.clone();
///     Box::pin(async move {
///         counted.fetch_add(1, Ordering::Relaxed);
///         let result = next.run(invocation).await?;
///         Ok(result.with_log(format!("{} ran", function.name())))
///     })
/// });
/// let builder = Host::builder().middleware(Arc::new(counting));
/// # let _ = builder;
/// ```
///
/// The future borrows `function` and `next`, so the closure returns it
/// boxed (`Box::pin(async move { ... })`, a [`BoxFuture`]): a plain
/// `|..| async move { ... }` cannot return a future that borrows its
/// arguments, and an `async |..|` closure cannot yet promise a `Send`
/// future on stable Rust. State the closure captures is cloned into each
/// future (an `Arc`), as above.
pub fn middleware_fn<F>(f: F) -> MiddlewareFn<F>
where
    F: for<'a> Fn(
            &'a FunctionInfo,
            Invocation,
            Next<'a>,
        ) -> BoxFuture<'a, Result<InvocationResult, InvokeError>>
        + Send
        + Sync,
{
    MiddlewareFn { f }
}

/// A closure as a [`Middleware`]; made by [`middleware_fn`].
#[derive(Clone, Copy)]
pub struct MiddlewareFn<F> {
    f: F,
}

impl<F> fmt::Debug for MiddlewareFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MiddlewareFn")
            .field("f", &std::any::type_name::<F>())
            .finish()
    }
}

impl<F> Middleware for MiddlewareFn<F>
where
    F: for<'a> Fn(
            &'a FunctionInfo,
            Invocation,
            Next<'a>,
        ) -> BoxFuture<'a, Result<InvocationResult, InvokeError>>
        + Send
        + Sync,
{
    fn call<'a>(
        &'a self,
        function: &'a FunctionInfo,
        invocation: Invocation,
        next: Next<'a>,
    ) -> BoxFuture<'a, Result<InvocationResult, InvokeError>> {
        (self.f)(function, invocation, next)
    }
}

/// The rest of the pipeline, given to a [`Middleware`].
#[derive(Debug)]
pub struct Next<'a> {
    middleware: &'a [Arc<dyn Middleware>],
    executor: &'a dyn Executor,
    function: &'a FunctionInfo,
}

impl<'a> Next<'a> {
    /// Runs the rest of the pipeline.
    pub fn run(
        self,
        invocation: Invocation,
    ) -> BoxFuture<'a, Result<InvocationResult, InvokeError>> {
        match self.middleware.split_first() {
            Some((first, rest)) => first.call(
                self.function,
                invocation,
                Next {
                    middleware: rest,
                    executor: self.executor,
                    function: self.function,
                },
            ),
            None => Box::pin(run_executor(self.executor, self.function, invocation)),
        }
    }
}

/// What the pipeline knows of a function, computed once per app version.
#[derive(Clone)]
pub struct FunctionInfo {
    /// Its position in the app version.
    pub index: usize,
    /// The function as loaded.
    pub function: Function,
    /// The app folder.
    pub app_root: std::path::PathBuf,
    /// The timeout of each attempt (`None`: no limit).
    pub timeout: Option<Duration>,
    /// The retry policy, from function.json or else host.json.
    pub retry: Option<RetryPolicy>,
    /// The name of the trigger binding.
    pub trigger_name: String,
    /// The name of the `http` output binding, if any (may be `$return`).
    pub http_output: Option<String>,
    /// The app settings of its app version (connection strings and
    /// `%Setting%` values for bindings), shared by all its functions.
    pub settings: Arc<AppSettings>,
    /// The host.json of its app version (`extensions` for bindings),
    /// shared by all its functions.
    pub host: Arc<HostConfig>,
}

// Settings hold secrets (connection strings): not printed.
impl fmt::Debug for FunctionInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FunctionInfo")
            .field("index", &self.index)
            .field("function", &self.function)
            .field("app_root", &self.app_root)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("trigger_name", &self.trigger_name)
            .field("http_output", &self.http_output)
            .finish_non_exhaustive()
    }
}

impl FunctionInfo {
    /// The function name.
    pub fn name(&self) -> &str {
        &self.function.name
    }

    fn new(
        index: usize,
        app: &FunctionApp,
        function: &Function,
        shared: &(Arc<AppSettings>, Arc<HostConfig>),
    ) -> Self {
        let timeout = match app.host().function_timeout {
            None => Some(DEFAULT_FUNCTION_TIMEOUT),
            Some(FunctionTimeout::Limited(d)) => Some(d),
            Some(FunctionTimeout::Unlimited) => None,
        };
        let trigger_name = function
            .config
            .trigger()
            .map(|b| b.name.clone())
            .unwrap_or_default();
        let http_output = function
            .config
            .bindings
            .iter()
            .find(|b| b.type_name.eq_ignore_ascii_case("http") && b.direction == Direction::Out)
            .map(|b| b.name.clone());
        FunctionInfo {
            index,
            function: function.clone(),
            app_root: app.root().to_path_buf(),
            timeout,
            retry: function.config.retry.or(app.host().retry),
            trigger_name,
            http_output,
            settings: shared.0.clone(),
            host: shared.1.clone(),
        }
    }

    /// The HTTP response of a result, as the host reads it: the `http`
    /// output binding's value (or `$return` when that binding is
    /// `$return`); a `$return` without an `http` binding is used too. `None`
    /// when the function gave none (the front answers 204).
    pub fn http_response(
        &self,
        result: &InvocationResult,
    ) -> Option<Result<http::HttpResponse, http::InvalidResponse>> {
        let value = match &self.http_output {
            Some(name) => result.output(name),
            None => result.return_value.as_ref(),
        }?;
        Some(match value {
            BindingData::HttpResponse(r) => Ok((**r).clone()),
            BindingData::Json(v) => http::HttpResponse::from_json(v),
            BindingData::Bytes(_) => http::HttpResponse::from_json(&value.to_json()),
            BindingData::HttpRequest(_) => Err(http::InvalidResponse(
                "the function returned a request, not a response".into(),
            )),
        })
    }
}

/// A loaded app with an executor bound to each function: what a [`Host`]
/// serves.
pub struct AppVersion {
    app: FunctionApp,
    functions: Vec<FunctionInfo>,
    executors: Vec<Option<Arc<dyn Executor>>>,
    middleware: Arc<[Arc<dyn Middleware>]>,
    generation: u64,
    /// The app-wide executor that indexes functions, if a factory gave one.
    indexer: Option<Arc<dyn Executor>>,
    /// Whether the indexer was started (and its functions added) already.
    indexed: bool,
}

impl fmt::Debug for AppVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppVersion")
            .field("root", &self.app.root())
            .field("functions", &self.functions.len())
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl AppVersion {
    /// The app.
    pub fn app(&self) -> &FunctionApp {
        &self.app
    }

    /// What the pipeline knows of each function, in app order.
    pub fn functions(&self) -> &[FunctionInfo] {
        &self.functions
    }

    /// Counts versions: 1 for the first a host loads, then 2, 3...
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The executor of a function, if one was bound.
    pub fn executor(&self, index: usize) -> Option<&Arc<dyn Executor>> {
        self.executors.get(index).and_then(Option::as_ref)
    }

    /// Each distinct executor once.
    fn distinct_executors(&self) -> Vec<Arc<dyn Executor>> {
        let mut out: Vec<Arc<dyn Executor>> = Vec::new();
        for e in self.executors.iter().flatten().chain(self.indexer.as_ref()) {
            if !out.iter().any(|o| Arc::ptr_eq(o, e)) {
                out.push(e.clone());
            }
        }
        out
    }

    /// Starts every executor of this version (the indexer once: it may
    /// have been started to index the app).
    pub async fn start(&self) -> Result<(), ExecutorError> {
        for e in self.distinct_executors() {
            if self.indexed && self.indexer.as_ref().is_some_and(|i| Arc::ptr_eq(i, &e)) {
                continue;
            }
            e.start().await?;
        }
        Ok(())
    }

    /// The executor that indexes this version's app, if any.
    pub fn indexer(&self) -> Option<&Arc<dyn Executor>> {
        self.indexer.as_ref()
    }

    /// Stops every executor of this version.
    pub async fn shutdown(&self) {
        for e in self.distinct_executors() {
            e.shutdown().await;
        }
    }
}

/// A function resolved once, to invoke many times. It keeps its app version
/// alive: invocations through it run on that version even after a swap.
#[derive(Debug, Clone)]
pub struct FunctionHandle {
    version: Arc<AppVersion>,
    index: usize,
}

impl FunctionHandle {
    /// The function.
    pub fn info(&self) -> &FunctionInfo {
        &self.version.functions[self.index]
    }

    /// The app version it runs on.
    pub fn version(&self) -> &Arc<AppVersion> {
        &self.version
    }

    /// Runs one invocation through the whole pipeline, in a `tracing`
    /// span `invocation` (fields `function`, `id`). The span costs one
    /// cached check when no subscriber wants it (the `invoke` benchmark).
    pub async fn invoke(&self, invocation: Invocation) -> Result<InvocationResult, InvokeError> {
        let span = tracing::info_span!(
            "invocation",
            function = self.info().name(),
            id = %invocation.id
        );
        // No subscriber wants it: no span to enter at each poll.
        if span.is_disabled() {
            return invoke_in(&self.version, self.index, invocation).await;
        }
        invoke_in(&self.version, self.index, invocation)
            .instrument(span)
            .await
    }
}

/// Runs an invocation of function `index` of `version`.
async fn invoke_in(
    version: &AppVersion,
    index: usize,
    mut invocation: Invocation,
) -> Result<InvocationResult, InvokeError> {
    let info = &version.functions[index];
    let Some(executor) = version.executors[index].as_deref() else {
        return Err(InvokeError::NoExecutor {
            function: info.function.name.clone(),
        });
    };
    let Some(policy) = info.retry else {
        return attempt(version, info, executor, invocation).await;
    };
    invocation.max_retry_count = policy.max_retry_count;
    let mut retry = 0u32;
    loop {
        invocation.retry_count = retry;
        let error = match attempt(version, info, executor, invocation.clone()).await {
            Ok(result) => return Ok(result),
            Err(e) => e,
        };
        if !error.is_retryable() || !policy.allows(retry) {
            return Err(error);
        }
        sleep(policy.delay(retry)).await;
        retry += 1;
    }
}

/// One attempt: middleware, timeout, panic guard, executor.
async fn attempt(
    version: &AppVersion,
    info: &FunctionInfo,
    executor: &dyn Executor,
    invocation: Invocation,
) -> Result<InvocationResult, InvokeError> {
    let next = Next {
        middleware: &version.middleware,
        executor,
        function: info,
    };
    match info.timeout {
        Some(limit) => with_timeout(limit, info, next.run(invocation)).await,
        None => next.run(invocation).await,
    }
}

#[cfg(feature = "tokio")]
async fn with_timeout<F>(
    limit: Duration,
    info: &FunctionInfo,
    fut: F,
) -> Result<InvocationResult, InvokeError>
where
    F: Future<Output = Result<InvocationResult, InvokeError>>,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return fut.await;
    }
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(InvokeError::Timeout {
            function: info.function.name.clone(),
            after: limit,
        }),
    }
}

#[cfg(not(feature = "tokio"))]
async fn with_timeout<F>(
    _limit: Duration,
    _info: &FunctionInfo,
    fut: F,
) -> Result<InvocationResult, InvokeError>
where
    F: Future<Output = Result<InvocationResult, InvokeError>>,
{
    fut.await
}

#[cfg(feature = "tokio")]
async fn sleep(d: Duration) {
    if !d.is_zero() && tokio::runtime::Handle::try_current().is_ok() {
        tokio::time::sleep(d).await;
    }
}

#[cfg(not(feature = "tokio"))]
async fn sleep(_d: Duration) {}

/// Calls the executor with the panic guard around both the call and the
/// future it returns.
async fn run_executor(
    executor: &dyn Executor,
    info: &FunctionInfo,
    invocation: Invocation,
) -> Result<InvocationResult, InvokeError> {
    let name = || info.function.name.clone();
    let fut = match std::panic::catch_unwind(AssertUnwindSafe(|| executor.invoke(info, invocation)))
    {
        Ok(fut) => fut,
        Err(panic) => {
            return Err(InvokeError::Panicked {
                function: name(),
                message: panic_message(&*panic),
            });
        }
    };
    match (CatchUnwind { inner: fut }).await {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(error)) if error.unavailable => Err(InvokeError::Unavailable {
            function: name(),
            error,
        }),
        Ok(Err(error)) => Err(InvokeError::Failed {
            function: name(),
            error,
        }),
        Err(message) => Err(InvokeError::Panicked {
            function: name(),
            message,
        }),
    }
}

/// Polls a boxed future, turning a panic into an error.
struct CatchUnwind<'a, T> {
    inner: BoxFuture<'a, T>,
}

impl<T> Future for CatchUnwind<'_, T> {
    type Output = Result<T, String>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.inner;
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic_message(&*panic))),
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// How a [`Host`] binds executors to the functions of each app version.
#[derive(Debug, Default, Clone)]
struct Binder {
    overrides: HashMap<String, Arc<dyn Executor>>,
    native: Option<Arc<crate::exec::NativeExecutor>>,
    factories: Vec<Arc<dyn ExecutorFactory>>,
    middleware: Vec<Arc<dyn Middleware>>,
}

impl Binder {
    fn bind(&self, app: FunctionApp, generation: u64) -> AppVersion {
        let indexer = self
            .factories
            .iter()
            .find_map(|f| f.indexing_executor(&app));
        self.bind_with(app, generation, indexer, false)
    }

    fn bind_with(
        &self,
        app: FunctionApp,
        generation: u64,
        indexer: Option<Arc<dyn Executor>>,
        indexed: bool,
    ) -> AppVersion {
        let shared = (
            Arc::new(app.settings().clone()),
            Arc::new(app.host().clone()),
        );
        let functions: Vec<FunctionInfo> = app
            .functions()
            .iter()
            .enumerate()
            .map(|(i, f)| FunctionInfo::new(i, &app, f, &shared))
            .collect();
        let mut executors: Vec<Option<Arc<dyn Executor>>> = app
            .functions()
            .iter()
            .map(|f| {
                self.overrides
                    .get(&f.name.to_ascii_lowercase())
                    .cloned()
                    .or_else(|| self.native.as_ref().and_then(|n| n.bound(&f.name)))
            })
            .collect();
        if let Some(indexer) = &indexer {
            for slot in executors.iter_mut().filter(|s| s.is_none()) {
                *slot = Some(indexer.clone());
            }
        }
        for factory in &self.factories {
            if executors.iter().all(Option::is_some) {
                break;
            }
            let offered = factory.executors(&app);
            for (slot, offer) in executors.iter_mut().zip(offered) {
                if slot.is_none() {
                    *slot = offer;
                }
            }
        }
        AppVersion {
            app,
            functions,
            executors,
            middleware: self.middleware.clone().into(),
            generation,
            indexer,
            indexed,
        }
    }

    /// Starts the version's indexer, if any, and binds the app again with
    /// the functions it found; then starts every other executor. On error
    /// everything started is stopped.
    async fn start(&self, version: AppVersion) -> Result<AppVersion, ExecutorError> {
        let version = match version.indexer.clone() {
            Some(indexer) if !version.indexed => {
                if let Err(e) = indexer.start().await {
                    indexer.shutdown().await;
                    return Err(e);
                }
                let found = indexer.indexed_functions();
                let generation = version.generation;
                let app = if found.is_empty() {
                    version.app
                } else {
                    version.app.with_indexed_functions(&found)
                };
                self.bind_with(app, generation, Some(indexer), true)
            }
            _ => version,
        };
        if let Err(e) = version.start().await {
            version.shutdown().await;
            return Err(e);
        }
        Ok(version)
    }
}

/// Builds a [`Host`].
///
/// The executor of each function is chosen by this rule, first match wins:
/// 1. an executor set for that function name ([`HostBuilder::executor_for`]);
/// 2. a native function registered under that name ([`HostBuilder::native`]);
/// 3. the factories, in the order added ([`HostBuilder::factory`]); with the
///    `tokio` feature, `HostBuilder::with_default_executors` adds the custom
///    handler (when host.json configures one) and then the one-shot process
///    executor (for the function's primary script).
#[derive(Debug, Default)]
pub struct HostBuilder {
    binder: Binder,
}

impl HostBuilder {
    /// A builder with no executors.
    pub fn new() -> Self {
        Self::default()
    }

    /// Native functions, registered by name.
    pub fn native(mut self, native: crate::exec::NativeExecutor) -> Self {
        self.binder.native = Some(Arc::new(native));
        self
    }

    /// Runs the function `name` (ignoring case) with `executor`, whatever
    /// else would.
    pub fn executor_for(mut self, name: &str, executor: Arc<dyn Executor>) -> Self {
        self.binder
            .overrides
            .insert(name.to_ascii_lowercase(), executor);
        self
    }

    /// Adds an executor factory, asked after the ones added before.
    pub fn factory(mut self, factory: Arc<dyn ExecutorFactory>) -> Self {
        self.binder.factories.push(factory);
        self
    }

    /// Adds middleware; the first added runs outermost.
    pub fn middleware(mut self, middleware: Arc<dyn Middleware>) -> Self {
        self.binder.middleware.push(middleware);
        self
    }

    /// Builds the host around its first app version (not started: see
    /// [`Host::start`]).
    pub fn build(self, app: FunctionApp) -> Host {
        let version = Arc::new(self.binder.bind(app, 1));
        Host {
            current: ArcSwap::new(version),
            binder: self.binder,
            generations: AtomicU64::new(1),
        }
    }
}

/// Runs the functions of an app, and swaps in new versions of it.
pub struct Host {
    current: ArcSwap<AppVersion>,
    binder: Binder,
    generations: AtomicU64,
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("current", &self.current.load())
            .finish_non_exhaustive()
    }
}

impl Host {
    /// Starts building a host.
    pub fn builder() -> HostBuilder {
        HostBuilder::new()
    }

    /// The current app version.
    pub fn current(&self) -> Arc<AppVersion> {
        self.current.load_full()
    }

    /// Resolves a function of the current version by name (ignoring case).
    pub fn resolve(&self, name: &str) -> Option<FunctionHandle> {
        let version = self.current();
        let index = version.app.function_index(name)?;
        Some(FunctionHandle { version, index })
    }

    /// A handle to function `index` of `version`.
    pub fn handle(version: Arc<AppVersion>, index: usize) -> Option<FunctionHandle> {
        (index < version.functions.len()).then_some(FunctionHandle { version, index })
    }

    /// Resolves and invokes in one step (prefer resolving once).
    pub async fn invoke(
        &self,
        name: &str,
        invocation: Invocation,
    ) -> Result<InvocationResult, InvokeError> {
        let handle = self.resolve(name).ok_or_else(|| InvokeError::NotFound {
            function: name.to_owned(),
        })?;
        handle.invoke(invocation).await
    }

    /// Starts the executors of the current version. An executor that
    /// indexes the app (see [`ExecutorFactory::indexing_executor`]) starts
    /// first, and the functions it finds join the current version.
    pub async fn start(&self) -> Result<(), ExecutorError> {
        let current = self.current();
        if current.indexer.is_none() || current.indexed {
            return current.start().await;
        }
        let unstarted = self.binder.bind_with(
            current.app.with_indexed_functions(&[]),
            current.generation,
            current.indexer.clone(),
            false,
        );
        let version = self.binder.start(unstarted).await?;
        self.current.store(Arc::new(version));
        Ok(())
    }

    /// Binds executors to a new version of the app (same rules as the
    /// first), starts them, and makes it current. Returns the version it
    /// replaced; invocations on it go on, and it should be shut down (see
    /// [`AppVersion::shutdown`]) when they are done. On error the current
    /// version stays.
    pub async fn swap(&self, app: FunctionApp) -> Result<Arc<AppVersion>, ExecutorError> {
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let version = self.binder.start(self.binder.bind(app, generation)).await?;
        Ok(self.current.swap(Arc::new(version)))
    }

    /// Stops the executors of the current version.
    pub async fn shutdown(&self) {
        self.current().shutdown().await;
    }
}
