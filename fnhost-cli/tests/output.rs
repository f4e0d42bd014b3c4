//! The output rules every command follows (docs/cli.md, "Output"): with
//! the global `--json` (before or after the command) stdout is one JSON
//! document a program can parse; messages go to stderr; `serve` and
//! `manage` print their address the same way.

#![allow(clippy::unwrap_used)] // tests panic on what they do not expect

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use fnhost_testsupport::Running;
use serde_json::Value;

mod support;
use support::*;

/// An app of script functions: an HTTP one and a timer.
fn script_app(dir: &Path) {
    write(&dir.join("host.json"), r#"{"version": "2.0"}"#);
    write(
        &dir.join("Hello/function.json"),
        r#"{"bindings": [{"type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "anonymous", "methods": ["get"]}, {"type": "http", "direction": "out", "name": "$return"}]}"#,
    );
    write(
        &dir.join("Hello/run.sh"),
        "#!/bin/sh\necho '{\"ReturnValue\": {\"statusCode\": 200, \"body\": \"hello\"}}'\n",
    );
    write(
        &dir.join("Tick/function.json"),
        r#"{"bindings": [{"type": "timerTrigger", "direction": "in", "name": "t", "schedule": "0 0 0 1 1 *"}]}"#,
    );
    write(&dir.join("Tick/run.sh"), "#!/bin/sh\n");
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The whole of stdout as one JSON document; panics (with both outputs)
/// when the command failed or stdout holds anything else.
fn document(args: &[&str], out: &Output) -> Value {
    assert!(
        out.status.success(),
        "fnhost {args:?} failed ({:?})\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "fnhost {args:?}: stdout is not one JSON document ({e}):\n{}",
            text(&out.stdout)
        )
    })
}

/// Runs `args` with `--json` after the command and again with `--json`
/// before it; both print one JSON document, the same unless `volatile`.
fn both_ways(home: &Path, args: &[&str], volatile: bool) -> Value {
    let after: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
    let first = document(&after, &fnhost(home, &after));
    if !volatile {
        let before: Vec<&str> = ["--json"].into_iter().chain(args.iter().copied()).collect();
        let second = document(&before, &fnhost(home, &before));
        assert_eq!(
            first, second,
            "fnhost {args:?}: --json before and after differ"
        );
    }
    first
}

#[test]
fn every_data_command_prints_one_json_document() {
    let (tmp, home) = scratch_home();
    let v1 = make_app(&tmp.path().join("v1"), "one");
    let v2 = make_app(&tmp.path().join("v2"), "two");
    let (v1s, v2s) = (v1.to_str().unwrap(), v2.to_str().unwrap());

    // `--json` before the command (the global flag).
    let args = ["--json", "apps", "create", "demo"];
    let created = document(&args, &fnhost(&home, &args));
    assert_eq!(created["name"], "demo");
    assert_eq!(created["slots"][0]["name"], "production");

    let apps = both_ways(&home, &["apps", "list"], false);
    assert_eq!(apps[0]["name"], "demo");

    let args = ["deploy", "demo", "--dir", v1s, "--json"];
    let d1 = document(&args, &fnhost(&home, &args));
    assert_eq!(d1["status"], "success");
    assert_eq!(d1["status_code"], 4);
    assert_eq!(d1["complete"], true);
    assert_eq!(d1["unchanged"], false);
    assert!(d1["log"][0]["log_time"].is_string(), "{d1}");
    assert_eq!(d1["log"][0]["type"], 0);
    let id1 = d1["id"].as_str().unwrap().to_owned();
    let args = ["--json", "deploy", "demo", "--dir", v2s];
    let d2 = document(&args, &fnhost(&home, &args));
    assert_eq!(d2["active"], true);

    let list = both_ways(&home, &["deployments", "demo"], false);
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert!(list[0].get("log").is_none(), "a list has no logs: {list}");
    let shown = both_ways(&home, &["deployments", "show", "demo", &id1], false);
    assert_eq!(shown["id"], id1.as_str());
    assert!(shown["log"].is_array());
    let log = both_ways(&home, &["deployments", "log", "demo", &id1], false);
    assert!(log[0]["message"].is_string(), "{log}");

    let back = both_ways(&home, &["rollback", "demo"], true);
    assert_eq!(back["id"], id1.as_str());
    let swapped = both_ways(&home, &["swap", "demo", "production", "staging"], true);
    assert_eq!(swapped[1]["slot"], "staging");
    assert_eq!(swapped[1]["active"], id1.as_str());

    let set = both_ways(&home, &["settings", "set", "demo", "A=1"], false);
    assert_eq!(set["A"], "1");
    let settings = both_ways(&home, &["settings", "list", "demo"], false);
    assert_eq!(settings["A"], "1");

    let fsck = both_ways(&home, &["fsck"], false);
    assert_eq!(fsck["ok"], true);
    assert!(fsck["manifests"].as_u64().unwrap() >= 2);
    let gc = both_ways(&home, &["gc"], false);
    assert!(gc["blobs"].is_u64() && gc["temporary"].is_u64(), "{gc}");
    let source = both_ways(&home, &["source", "show", "demo"], false);
    assert_eq!(source["source"], Value::Null);

    let workers = tmp.path().join("workers");
    std::fs::create_dir_all(&workers).unwrap();
    let listed = both_ways(
        &home,
        &["workers", "list", "--dir", workers.to_str().unwrap()],
        false,
    );
    assert_eq!(listed["workers"], serde_json::json!([]));

    // The app-folder commands.
    let app = tmp.path().join("scripts");
    script_app(&app);
    let apps = app.to_str().unwrap();
    let report = both_ways(&home, &["validate", apps], false);
    assert_eq!(report["errors"], 0);
    assert_eq!(report["functions"], 2);
    let functions = both_ways(&home, &["list", apps], true);
    assert_eq!(functions[0]["name"], "Hello");
    assert_eq!(functions[1]["schedule"]["expression"], "0 0 0 1 1 *");
    let keys = both_ways(&home, &["keys", "list", apps], false);
    assert!(keys["master"].is_string(), "{keys}");
    let invoked = both_ways(&home, &["invoke", apps, "Hello"], true);
    assert_eq!(invoked["succeeded"], true, "{invoked}");
    assert_eq!(invoked["http"]["body"], "hello", "{invoked}");
}

#[test]
fn messages_go_to_stderr_and_data_to_stdout() {
    let (_tmp, home) = scratch_home();
    // A confirmation with no data: nothing on stdout.
    for (args, says) in [
        (&["apps", "create", "demo"][..], "created app demo"),
        (
            &["source", "clear", "demo"][..],
            "demo/production: had no source",
        ),
        (&["settings", "set", "demo", "A=1"][..], "1 app setting"),
        (&["apps", "delete", "demo"][..], "deleted app demo"),
    ] {
        let out = fnhost(&home, args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "", "{args:?} printed on stdout");
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    // Data: on stdout, nothing else there.
    let out = fnhost(&home, &["apps", "list"]);
    assert_eq!(text(&out.stdout), "");
    fnhost_ok(&home, &["apps", "create", "shop"], "");
    let out = fnhost(&home, &["apps", "list"]);
    assert_eq!(text(&out.stdout), "shop\tproduction\t-\n");
    // An error: on stderr, exit 2, nothing on stdout even with --json.
    let out = fnhost(&home, &["--json", "deployments", "nosuch"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stdout), "");
    assert!(text(&out.stderr).starts_with("fnhost: error: "));
}

/// `fnhost ARGS` started in the background.
fn start(home: &Path, args: &[&str]) -> Running {
    let mut cmd = Command::new(BIN);
    cmd.arg("--home").arg(home).args(args).env_remove("TZ");
    Running::spawn(cmd)
}

/// The first stdout line that starts with `prefix`.
fn stdout_line(run: &Running, prefix: &str) -> String {
    run.wait_stdout(prefix, Duration::from_secs(60))
        .trim()
        .to_owned()
}

#[test]
fn serve_and_manage_print_their_address_the_same_way() {
    let (tmp, home) = scratch_home();
    let app = tmp.path().join("app");
    script_app(&app);
    let apps = app.to_str().unwrap();
    let servers = [
        vec!["serve", apps, "--port", "0"],
        vec!["manage", "--port", "0"],
    ];
    for args in &servers {
        // Text: `listening on http://ADDR` on stdout; nothing of it on stderr.
        let mut run = start(&home, args);
        let line = stdout_line(&run, "listening on ");
        let url = line.strip_prefix("listening on ").unwrap();
        assert!(url.starts_with("http://127.0.0.1:"), "{args:?}: {line}");
        let addr = run.listening(Duration::from_secs(5));
        assert_eq!(url, format!("http://{addr}"));
        run.stop();
        assert!(
            !run.stderr().contains("listening"),
            "{args:?}: {}",
            run.output()
        );

        // JSON: one line, an object with `listening`.
        let json: Vec<&str> = ["--json"].into_iter().chain(args.iter().copied()).collect();
        let mut run = start(&home, &json);
        let line = stdout_line(&run, "{");
        let v: Value = serde_json::from_str(&line).unwrap();
        assert!(
            v["listening"]
                .as_str()
                .unwrap()
                .starts_with("http://127.0.0.1:"),
            "{json:?}: {line}"
        );
        if args[0] == "serve" {
            assert_eq!(v["functions"][0]["name"], "Hello", "{line}");
            assert_eq!(v["functions"][0]["http"]["route"], "/api/Hello", "{line}");
        }
        run.stop();
        assert_eq!(run.stdout().trim(), line, "{json:?}: {}", run.output());
    }
}

/// Every stderr line of `out` as JSON.
fn json_lines(args: &[&str], stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{args:?}: stderr line not JSON ({e}): {l:?}"))
        })
        .collect()
}

#[test]
fn log_format_json_prints_one_object_a_line_with_the_deployment_span() {
    let (tmp, home) = scratch_home();
    let v1 = make_app(&tmp.path().join("v1"), "one");
    fnhost_ok(&home, &["apps", "create", "demo"], "");
    let args = [
        "--log-format",
        "json",
        "deploy",
        "demo",
        "--dir",
        v1.to_str().unwrap(),
    ];
    let out = fnhost_ok(&home, &args, "");
    let lines = json_lines(&args, &text(&out.stderr));
    let logged: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["name"] == "deployment")
        .collect();
    assert!(!logged.is_empty(), "no deployment events: {lines:?}");
    for l in &logged {
        assert_eq!(l["span"]["app"], "demo", "{l}");
        assert_eq!(l["span"]["slot"], "production", "{l}");
        assert!(l["span"]["id"].as_str().unwrap().len() > 20, "{l}");
        assert!(
            l["message"].is_string() && l["timestamp"].is_string(),
            "{l}"
        );
    }
    // The result line on stdout is as without the flag.
    assert!(text(&out.stdout).starts_with("demo/production: deployment "));

    // A server's log lines: JSON, and the text format is `fnhost: LINE`.
    let app = tmp.path().join("app");
    script_app(&app);
    for format in ["json", "text"] {
        let args = [
            "--log-format",
            format,
            "serve",
            app.to_str().unwrap(),
            "--port",
            "0",
        ];
        let mut run = start(&home, &args);
        run.listening(Duration::from_secs(30));
        run.wait_stderr("press Ctrl-C to stop", Duration::from_secs(10));
        run.stop();
        let stderr = run.stderr();
        if format == "json" {
            let lines = json_lines(&args, &stderr);
            let ready = lines
                .iter()
                .find(|l| l["message"] == "press Ctrl-C to stop")
                .unwrap();
            assert_eq!(ready["level"], "INFO");
            assert_eq!(ready["target"], "fnhost");
        } else {
            assert!(
                stderr.lines().any(|l| l == "fnhost: press Ctrl-C to stop"),
                "{stderr}"
            );
            assert!(stderr.lines().all(|l| !l.starts_with('{')), "{stderr}");
        }
    }
}
