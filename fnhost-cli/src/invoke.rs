//! `fnhost invoke`: one invocation without a server.

use std::path::PathBuf;
use std::sync::Arc;

use fnhost_core::http::manual_invocation;
use fnhost_core::invoke::{BindingData, InvocationResult};
use serde_json::{Value, json};

use crate::serve::build_host;
use crate::{CmdResult, Failure, Output, load_app, print_json};

/// Arguments of `fnhost invoke`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// `[APP_DIR] FUNCTION`: the app folder (default: the current folder)
    /// and the function to run.
    #[arg(value_name = "[APP_DIR] FUNCTION", num_args = 1..=2, required = true)]
    args: Vec<String>,
    /// The input: JSON (or any text), or @FILE to read it from a file.
    /// For HTTP functions it is the body of a POST request.
    #[arg(long, value_name = "JSON|@FILE")]
    data: Option<String>,
}

pub(crate) fn run(args: Args, out: Output) -> CmdResult {
    let (dir, function) = match args.args.as_slice() {
        [f] => (PathBuf::from("."), f.clone()),
        [d, f] => (PathBuf::from(d), f.clone()),
        _ => return Err(Failure::Usage("give [APP_DIR] FUNCTION".into())),
    };
    let input = match args.data.as_deref() {
        None => Value::Null,
        Some(data) => {
            let text = match data.strip_prefix('@') {
                Some(file) => std::fs::read_to_string(file)
                    .map_err(|e| Failure::Usage(format!("{file}: cannot read --data: {e}")))?,
                None => data.to_owned(),
            };
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        }
    };
    let app = load_app(&dir)?;
    let runtime = crate::serve::runtime()?;
    runtime.block_on(async move {
        let host = Arc::new(build_host(app));
        host.start()
            .await
            .map_err(|e| Failure::Message(format!("the executor could not start: {e}")))?;
        // After the start: a language worker may have indexed functions.
        let version = host.current();
        let Some(index) = version.app().function_index(&function) else {
            let names: Vec<&str> = version
                .app()
                .functions()
                .iter()
                .map(|f| f.name.as_str())
                .collect();
            host.shutdown().await;
            return Err(Failure::Usage(format!(
                "the app has no function named '{function}' (its functions: {})",
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            )));
        };
        let handle = fnhost_core::Host::handle(version, index)
            .ok_or_else(|| Failure::Message("the function vanished".into()))?;
        let invocation = manual_invocation(handle.info(), input);
        let id = invocation.id.to_string();
        let outcome = handle.invoke(invocation).await;
        host.shutdown().await;
        let info = handle.info();
        match outcome {
            Ok(result) => {
                for line in &result.logs {
                    eprintln!("{}: {line}", info.name());
                }
                let http = http_json(info, &result);
                if out.json {
                    print_json(&json!({
                        "function": info.name(),
                        "id": id,
                        "succeeded": true,
                        "result": result.to_json(),
                        "http": http,
                        "error": null,
                    }))?;
                } else {
                    print_text(&result, http);
                }
                Ok(())
            }
            Err(e) => {
                for line in e.logs() {
                    eprintln!("{}: {line}", info.name());
                }
                if out.json {
                    print_json(&json!({
                        "function": info.name(),
                        "id": id,
                        "succeeded": false,
                        "result": null,
                        "http": null,
                        "error": e.to_string(),
                    }))?;
                }
                eprintln!("fnhost: error: {e}");
                Err(Failure::Failed)
            }
        }
    })
}

/// The HTTP response of an HTTP function's result, as JSON.
fn http_json(info: &fnhost_core::invoke::FunctionInfo, result: &InvocationResult) -> Value {
    if info.function.http.is_none() {
        return Value::Null;
    }
    match info.http_response(result) {
        None => json!({"statusCode": 204, "headers": {}, "body": ""}),
        Some(Ok(r)) => r.to_json(),
        Some(Err(e)) => json!({"error": e.to_string()}),
    }
}

fn print_text(result: &InvocationResult, http: Value) {
    if !http.is_null() {
        if let Some(e) = http.get("error") {
            println!("invalid HTTP response: {}", e.as_str().unwrap_or_default());
            return;
        }
        println!("HTTP {}", http["statusCode"]);
        if let Some(headers) = http["headers"].as_object() {
            for (k, v) in headers {
                println!("{k}: {}", v.as_str().unwrap_or_default());
            }
        }
        println!();
        println!("{}", http["body"].as_str().unwrap_or_default());
        return;
    }
    if let Some(v) = &result.return_value {
        println!("{}", pretty(v));
    }
    for (name, v) in &result.outputs {
        println!("{name}: {}", pretty(v));
    }
}

fn pretty(v: &BindingData) -> String {
    serde_json::to_string_pretty(&v.to_json()).unwrap_or_default()
}
