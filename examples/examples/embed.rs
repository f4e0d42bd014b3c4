//! Embedding fnhost: load an app, run its functions as Rust closures, and
//! invoke them through the pipeline.
//!
//! ```sh
//! cargo run -p fnhost-examples --example embed
//! ```

use fnhost_core::invoke::http::{HttpRequest, HttpResponse};
use fnhost_core::route::{Method, RouteMatch};
use fnhost_core::{FunctionApp, Host, Invocation, InvocationResult, NativeExecutor};
use serde_json::json;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The sample app: its function.json files declare the triggers and
    // routes; here Rust closures implement the functions.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/apps/hello");
    let app = FunctionApp::load(dir)?;
    if !app.is_valid() {
        return Err(app.diagnostics().to_string().into());
    }

    let native = NativeExecutor::new()
        .http("Hello", |req: HttpRequest| async move {
            let name = req.param("name").unwrap_or("world").to_owned();
            HttpResponse::text(format!("Hello, {name}!"))
        })
        .http("Add", |req: HttpRequest| async move {
            let n = |k| {
                req.param(k)
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(0)
            };
            HttpResponse::json(&json!({"sum": n("a") + n("b")}))
        })
        .function("Tick", |inv: Invocation| async move {
            Ok(InvocationResult::new().with_log(format!("tick {}", inv.id)))
        });
    let host = Host::builder().native(native).build(app);

    // Route a request the way an HTTP front does: the app's compiled router
    // gives the function and the route values.
    let version = host.current();
    let path = "/api/add/2/40";
    let RouteMatch::Matched { value, params } = version.app().router().find(Method::Post, path)
    else {
        return Err("no route".into());
    };
    let handle = Host::handle(version.clone(), *value).ok_or("no function")?;
    let mut request = HttpRequest::new(Method::Post, path);
    request.params = params
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let result = handle.invoke(Invocation::new(request)).await?;
    let response = handle
        .info()
        .http_response(&result)
        .ok_or("no response")??;
    println!(
        "POST {path} -> {} {}",
        response.status,
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.body, br#"{"sum":42}"#);

    // Resolve once, invoke many times.
    let tick = host.resolve("Tick").ok_or("no Tick")?;
    for _ in 0..3 {
        let result = tick
            .invoke(Invocation::new(json!({"IsPastDue": false})))
            .await?;
        println!("Tick logs: {:?}", result.logs);
    }
    Ok(())
}
