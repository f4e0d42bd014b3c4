//! Loading and validating an app of 1,000 functions, against merely reading
//! and JSON-parsing the same 1,001 files, in the same run.
//!
//! Target (issue 2): at most 2x the baseline; aim for under 15 ms warm.

use std::fs;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fnhost_benches::{iterations, measure, report};
use fnhost_core::FunctionApp;

const FUNCTIONS: usize = 1000;

fn make_app(root: &Path, with_scripts: bool) -> Vec<PathBuf> {
    let _ = fs::remove_dir_all(root);
    fs::create_dir_all(root).expect("mkdir");
    let host = if with_scripts {
        r#"{"version": "2.0", "functionTimeout": "00:05:00", "extensions": {"http": {"routePrefix": "api"}}}"#
    } else {
        r#"{"version": "2.0", "customHandler": {"description": {"defaultExecutablePath": "handler"}}}"#
    };
    fs::write(root.join("host.json"), host).expect("host.json");
    let mut files = vec![root.join("host.json")];
    for i in 0..FUNCTIONS {
        let name = format!("Function{i:04}");
        let dir = root.join(&name);
        fs::create_dir_all(&dir).expect("mkdir");
        let doc = match i % 4 {
            0 | 1 => format!(
                r#"{{
  "bindings": [
    {{ "authLevel": "function", "type": "httpTrigger", "direction": "in", "name": "req",
      "methods": ["get", "post"], "route": "svc{}/items/{{id:int}}/{}" }},
    {{ "type": "http", "direction": "out", "name": "res" }}
  ]
}}"#,
                i / 50,
                i
            ),
            2 => r#"{
  "bindings": [
    { "type": "timerTrigger", "direction": "in", "name": "timer", "schedule": "0 */5 * * * *" }
  ]
}"#
            .to_owned(),
            _ => r#"{
  "bindings": [
    { "type": "queueTrigger", "direction": "in", "name": "item", "queueName": "orders", "connection": "AzureWebJobsStorage" },
    { "type": "blob", "direction": "out", "name": "copy", "path": "out/{rand-guid}", "connection": "AzureWebJobsStorage" }
  ]
}"#
            .to_owned(),
        };
        fs::write(dir.join("function.json"), doc).expect("function.json");
        files.push(dir.join("function.json"));
        if with_scripts {
            fs::write(dir.join("index.js"), "module.exports = async () => {};\n").expect("script");
        }
    }
    files
}

fn main() {
    let base = std::env::temp_dir().join(format!("fnhost-bench-load-{}", std::process::id()));
    let iters = iterations(200)
        .min(200)
        .max(if fnhost_benches::quick() { 3 } else { 50 });
    for with_scripts in [false, true] {
        let root = base.join(if with_scripts { "node" } else { "custom" });
        let files = make_app(&root, with_scripts);
        let app = FunctionApp::load(&root).expect("loads");
        assert!(app.is_valid(), "{}", app.diagnostics());
        assert_eq!(app.functions().len(), FUNCTIONS);

        let label = if with_scripts {
            "scripts (primary script found per function)"
        } else {
            "custom handler (no scripts)"
        };
        println!("\n== app of {FUNCTIONS} functions, {label}");
        let baseline = measure(
            "read + serde_json::Value parse of 1,001 files",
            iters,
            || {
                for f in &files {
                    let text = fs::read_to_string(f).expect("read");
                    let v: serde_json::Value = serde_json::from_str(&text).expect("parse");
                    black_box(v);
                }
            },
        );
        let subject = measure(
            "FunctionApp::load (load + validate + routes)",
            iters,
            || {
                black_box(FunctionApp::load(&root).expect("loads"));
            },
        );
        report(
            "FunctionApp::load",
            subject,
            "read + parse",
            baseline,
            baseline * 2,
        );
        println!(
            "absolute target < 15 ms warm: {}",
            if subject < Duration::from_millis(15) {
                "MET"
            } else {
                "NOT MET"
            }
        );
    }
    let _ = fs::remove_dir_all(&base);
}
