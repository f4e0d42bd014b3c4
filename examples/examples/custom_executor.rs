//! Writing an executor of your own: here, one that runs functions written as
//! small arithmetic expressions in each function's folder (`expr.txt`), to
//! show the contract without any process or network. An executor for wasm,
//! a remote worker or a language runtime has the same shape.
//!
//! ```sh
//! cargo run -p fnhost-examples --example custom_executor
//! ```

use std::fs;
use std::sync::Arc;

use fnhost_core::invoke::{BoxFuture, ExecutorError, ExecutorFactory, FunctionInfo};
use fnhost_core::{Executor, FunctionApp, Host, Invocation, InvocationResult};
use serde_json::json;

/// Evaluates `x <op> n` against the trigger's `x`.
#[derive(Debug)]
struct ExpressionExecutor {
    op: char,
    operand: f64,
}

impl Executor for ExpressionExecutor {
    fn invoke<'a>(
        &'a self,
        function: &'a FunctionInfo,
        invocation: Invocation,
    ) -> BoxFuture<'a, Result<InvocationResult, ExecutorError>> {
        Box::pin(async move {
            let x = invocation.trigger.to_json()["x"]
                .as_f64()
                .ok_or_else(|| ExecutorError::failed("the input needs a number \"x\""))?;
            let y = match self.op {
                '+' => x + self.operand,
                '*' => x * self.operand,
                other => return Err(ExecutorError::failed(format!("unknown operator {other}"))),
            };
            Ok(InvocationResult::returning(json!(y)).with_log(format!(
                "{}: {x} {} {} = {y}",
                function.name(),
                self.op,
                self.operand
            )))
        })
    }
}

/// Gives an [`ExpressionExecutor`] to every function whose folder has an
/// `expr.txt`; leaves the others to the next factory.
#[derive(Debug)]
struct ExpressionFactory;

impl ExecutorFactory for ExpressionFactory {
    fn executors(&self, app: &FunctionApp) -> Vec<Option<Arc<dyn Executor>>> {
        app.functions()
            .iter()
            .map(|f| {
                let text = fs::read_to_string(f.dir.join("expr.txt")).ok()?;
                let (op, operand) = text.trim().split_once(' ')?;
                Some(Arc::new(ExpressionExecutor {
                    op: op.chars().next()?,
                    operand: operand.parse().ok()?,
                }) as Arc<dyn Executor>)
            })
            .collect()
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    fs::write(dir.path().join("host.json"), r#"{"version": "2.0"}"#)?;
    for (name, expr) in [("Double", "* 2"), ("Plus10", "+ 10")] {
        let f = dir.path().join(name);
        fs::create_dir_all(&f)?;
        fs::write(
            f.join("function.json"),
            r#"{"bindings": [{"type": "manualTrigger", "direction": "in", "name": "input"}]}"#,
        )?;
        fs::write(f.join("expr.txt"), expr)?;
    }
    let app = FunctionApp::load(dir.path())?;
    assert!(app.is_valid(), "{}", app.diagnostics());

    let host = Host::builder()
        .factory(Arc::new(ExpressionFactory))
        .build(app);
    host.start().await?;
    for name in ["Double", "Plus10"] {
        let result = host.invoke(name, Invocation::new(json!({"x": 21}))).await?;
        println!(
            "{name}(21) = {} {:?}",
            result
                .return_value
                .as_ref()
                .map(|v| v.to_json())
                .unwrap_or_default(),
            result.logs
        );
    }
    let Err(err) = host.invoke("Double", Invocation::new(json!({}))).await else {
        return Err("an input without x must fail".into());
    };
    println!("a bad input fails clearly: {err}");
    host.shutdown().await;
    Ok(())
}
