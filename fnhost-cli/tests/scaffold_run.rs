//! What a newcomer types, from relative paths: `fnhost init myapp`,
//! `fnhost new ... myapp`, `fnhost validate myapp`, `fnhost serve myapp`
//! (and `cd myapp; fnhost serve .`), `fnhost invoke myapp Hello`, for every
//! runtime and programming model fnhost scaffolds. The Node.js and Python
//! apps run on fnhost's language workers, installed once per test binary.
//! Every wait is bounded and every child is killed when its guard drops.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use fnhost_testsupport::Running;
use fnhost_testsupport::http::get_text;
use fnhost_testsupport::process::run_bounded;

mod support;
use support::{BIN, workers};
/// The longest any one command or wait may take.
const WAIT: Duration = Duration::from_secs(60);

/// `fnhost ARGS` in `cwd` with the test's workers folder.
fn fnhost_cmd(cwd: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(cwd)
        .args(args)
        .env("FNHOST_WORKERS_DIR", workers())
        .env_remove("FUNCTIONS_WORKER_RUNTIME")
        .env_remove("WEBSITE_TIME_ZONE")
        .env_remove("TZ");
    cmd
}

/// Runs `fnhost ARGS` in `cwd`; it must succeed. Returns stdout.
fn fnhost_ok(cwd: &Path, args: &[&str]) -> String {
    let out = run_bounded(fnhost_cmd(cwd, args), WAIT);
    assert!(
        out.status.success(),
        "fnhost {} (in {}) failed ({}):\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        cwd.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `fnhost ARGS` in `cwd`; it must fail. Returns stderr.
fn fnhost_err(cwd: &Path, args: &[&str]) -> String {
    let out = run_bounded(fnhost_cmd(cwd, args), WAIT);
    assert!(
        !out.status.success(),
        "fnhost {} should have failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A running `fnhost serve`.
struct Served {
    run: Running,
    addr: String,
}

/// `fnhost serve APP --port 0` in `cwd`, once it says where it listens.
fn serve(cwd: &Path, app: &str) -> Served {
    serve_with(cwd, app, &[])
}

/// `serve` with environment variables.
fn serve_with(cwd: &Path, app: &str, env: &[(&str, &str)]) -> Served {
    let mut cmd = fnhost_cmd(cwd, &["serve", app, "--port", "0"]);
    cmd.envs(env.iter().copied());
    let run = Running::spawn(cmd);
    let addr = run.listening(WAIT);
    Served { run, addr }
}

/// GETs `target` until it answers 200 (the worker may still be starting).
fn get_ok(served: &Served, target: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = get_text(&served.addr, target);
        if status == 200 {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "GET {target} answered {status}: {body}\nserver log:\n{}",
            served.run.stderr()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The app's master key, from `fnhost keys list APP --json` in `cwd`.
fn master_key(cwd: &Path, app: &str) -> String {
    let out = fnhost_ok(cwd, &["keys", "list", app, "--json"]);
    let keys: serde_json::Value = serde_json::from_str(&out).unwrap();
    keys["master"].as_str().unwrap().to_owned()
}

/// A custom handler for the scaffolded custom app (custom handler apps
/// bring their own executable; `fnhost init` names it `handler`).
const CUSTOM_HANDLER: &str = r#"#!/usr/bin/env node
const http = require('http');
http.createServer((req, res) => {
  let raw = '';
  req.on('data', (c) => (raw += c));
  req.on('end', () => {
    const fn = req.url.slice(1).split('?')[0];
    const data = (JSON.parse(raw || '{}').Data) || {};
    let out = { Outputs: {}, Logs: [`${fn} ran`] };
    if (fn === 'Hello') {
      const r = data.req || {};
      let name = r.Query && r.Query.name;
      if (!name && r.Body) {
        try { name = (typeof r.Body === 'string' ? JSON.parse(r.Body) : r.Body).name; } catch (e) {}
      }
      out.Outputs.res = { statusCode: 200, body: `Hello, ${name}. This HTTP triggered function executed successfully.` };
    }
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(out));
  });
}).listen(Number(process.env.FUNCTIONS_CUSTOMHANDLER_PORT), '127.0.0.1');
"#;

/// The whole newcomer's path for one runtime and model, in a fresh
/// folder used as the working directory.
fn newcomer(runtime: &str, model: Option<&str>, timer_log: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let mut init = vec!["init", "myapp", "--worker-runtime", runtime];
    if let Some(m) = model {
        init.extend(["--model", m]);
    }
    fnhost_ok(cwd, &init);
    fnhost_ok(
        cwd,
        &["new", "--template", "http", "--name", "Hello", "myapp"],
    );
    fnhost_ok(
        cwd,
        &["new", "--template", "timer", "--name", "Tick", "myapp"],
    );
    if runtime == "custom" {
        let handler = cwd.join("myapp/handler");
        std::fs::write(&handler, CUSTOM_HANDLER).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&handler, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    fnhost_ok(cwd, &["validate", "myapp"]);

    let key = master_key(cwd, "myapp");
    let target = format!("/api/Hello?name=Ada&code={key}");
    {
        let served = serve(cwd, "myapp");
        let body = get_ok(&served, &target);
        assert!(body.contains("Hello, Ada."), "{body}");
        // The timer is there too, and the HTTP function wants a key.
        let (status, _) = get_text(&served.addr, "/api/Hello?name=Ada");
        assert_eq!(status, 401);
    }

    let out = fnhost_ok(
        cwd,
        &["invoke", "myapp", "Hello", "--data", r#"{"name":"Ada"}"#],
    );
    assert!(out.contains("Hello, Ada."), "{out}");
    // The timer function runs too (on demand here), and logs.
    let out = run_bounded(fnhost_cmd(cwd, &["invoke", "myapp", "Tick"]), WAIT);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("Tick: ") && log.contains(timer_log), "{log}");

    // From inside the app: `fnhost serve .`.
    let inside = cwd.join("myapp");
    let served = serve(&inside, ".");
    let body = get_ok(&served, &target);
    assert!(body.contains("Hello, Ada."), "{body}");
}

#[test]
fn node_v4_app_from_init_runs() {
    newcomer("node", Some("v4"), "Timer function processed request.");
}

#[test]
fn node_v3_app_from_init_runs() {
    newcomer("node", Some("v3"), "JavaScript timer trigger function ran!");
}

#[test]
fn python_v2_app_from_init_runs() {
    newcomer(
        "python",
        Some("v2"),
        "Python timer trigger function executed.",
    );
}

#[test]
fn python_v1_app_from_init_runs() {
    newcomer("python", Some("v1"), "Python timer trigger function ran at");
}

#[test]
fn custom_app_from_init_runs() {
    newcomer("custom", None, "Tick ran");
}

#[test]
fn default_models_are_the_newest() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    fnhost_ok(cwd, &["init", "n", "--worker-runtime", "node"]);
    let package = std::fs::read_to_string(cwd.join("n/package.json")).unwrap();
    assert!(
        package.contains(r#""main": "src/functions/*.js""#),
        "{package}"
    );
    assert!(package.contains(r#""name": "n""#), "{package}");
    fnhost_ok(cwd, &["init", "p", "--worker-runtime", "python"]);
    assert!(cwd.join("p/function_app.py").is_file());
    let out = fnhost_ok(cwd, &["new", "-t", "http", "-n", "Hello", "p"]);
    assert!(out.contains("function_app.py"), "{out}");
}

#[test]
fn scaffold_mistakes_are_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let err = fnhost_err(
        cwd,
        &["init", "a", "--worker-runtime", "node", "--model", "v2"],
    );
    assert!(err.contains("node has no programming model v2"), "{err}");
    assert!(err.contains("v4") && err.contains("v3"), "{err}");
    assert!(!cwd.join("a").exists());
    let err = fnhost_err(
        cwd,
        &["init", "a", "--worker-runtime", "custom", "--model", "v4"],
    );
    assert!(err.contains("leave out --model"), "{err}");
    let err = fnhost_err(
        cwd,
        &["init", "a", "--worker-runtime", "python", "--model", "v9"],
    );
    assert!(err.contains("not a programming model"), "{err}");

    fnhost_ok(cwd, &["init", "a", "--worker-runtime", "node"]);
    let err = fnhost_err(cwd, &["init", "a", "--worker-runtime", "node"]);
    assert!(err.contains("never overwrites"), "{err}");
    let err = fnhost_err(cwd, &["new", "-t", "manual", "-n", "Run", "a"]);
    assert!(err.contains("no manual trigger"), "{err}");
    fnhost_ok(cwd, &["new", "-t", "http", "-n", "Hello", "a"]);
    let err = fnhost_err(cwd, &["new", "-t", "timer", "-n", "hello", "a"]);
    assert!(
        err.contains("already has a function named 'Hello'"),
        "{err}"
    );

    fnhost_ok(cwd, &["init", "b", "--worker-runtime", "python"]);
    fnhost_ok(cwd, &["new", "-t", "http", "-n", "Hello", "b"]);
    let before = std::fs::read_to_string(cwd.join("b/function_app.py")).unwrap();
    let err = fnhost_err(cwd, &["new", "-t", "queue", "-n", "HELLO", "b"]);
    assert!(
        err.contains("already has a function named 'Hello'"),
        "{err}"
    );
    let after = std::fs::read_to_string(cwd.join("b/function_app.py")).unwrap();
    assert_eq!(before, after);
}

/// Every template of every model is valid code: `node --check` for
/// JavaScript, `py_compile` for Python.
#[test]
fn every_template_is_valid_code() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let templates = [
        "http",
        "timer",
        "queue",
        "blob",
        "manual",
        "eventgrid",
        "servicebus",
        "eventhub",
        "rabbitmq",
    ];
    for (runtime, model) in [
        ("node", "v4"),
        ("node", "v3"),
        ("python", "v2"),
        ("python", "v1"),
    ] {
        fnhost_ok(
            cwd,
            &["init", model, "--worker-runtime", runtime, "--model", model],
        );
        for t in templates {
            let name = format!("F_{t}");
            let out = run_bounded(fnhost_cmd(cwd, &["new", "-t", t, "-n", &name, model]), WAIT);
            let manual_missing = t == "manual" && matches!(model, "v4" | "v2");
            assert_eq!(
                out.status.success(),
                !manual_missing,
                "{runtime} {model} {t}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let app = cwd.join(model);
        let mut scripts = Vec::new();
        let mut stack = vec![app.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "js" || e == "py") {
                    scripts.push(path);
                }
            }
        }
        let expected = match model {
            "v4" => 8,
            "v3" | "v1" => 9,
            _ => 1,
        };
        assert_eq!(scripts.len(), expected, "{model}: {scripts:?}");
        for script in scripts {
            let mut cmd = if runtime == "node" {
                let mut c = Command::new("node");
                c.arg("--check");
                c
            } else {
                let mut c = Command::new("python3");
                c.args(["-m", "py_compile"]);
                c.env("PYTHONDONTWRITEBYTECODE", "1");
                c
            };
            cmd.arg(&script);
            let out = run_bounded(cmd, WAIT);
            assert!(
                out.status.success(),
                "{}: {}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[path = "../../fnhost-triggers/tests/support/mod.rs"]
mod storage_support;

/// Waits until the server's log has a line with `needle`.
fn wait_log(served: &Served, seen: &mut String, needle: &str) {
    served.run.wait_stderr(needle, WAIT);
    *seen = served.run.stderr();
}

/// `fnhost new --template queue|blob|rabbitmq` in a Node.js v4 app from
/// `fnhost init`: with the connections set, `fnhost serve` runs each on a
/// queue message, a blob and a RabbitMQ message (Azurite and the test
/// broker).
#[test]
fn queue_blob_and_rabbitmq_templates_run() {
    use fnhost_triggers::MessageEncoding;
    use fnhost_triggers::queue::encode_message;
    use fnhost_triggers::storage::PutOptions;
    let (rt, azurite) = storage_support::runtime_and_azurite();
    let rabbit_uri = std::env::var("FNHOST_RABBITMQ_URI")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let rabbit_fn = format!("Rabbit{}", std::process::id());
    let rabbit_queue = format!("{}-queue", rabbit_fn.to_ascii_lowercase());
    let (conn, channel) = rt.block_on(async {
        let conn = lapin::Connection::connect(&rabbit_uri, lapin::ConnectionProperties::default())
            .await
            .unwrap_or_else(|e| {
                panic!("no RabbitMQ at {rabbit_uri} ({e}): scripts/test.sh starts one")
            });
        let channel = conn.create_channel().await.unwrap();
        channel
            .queue_declare(
                rabbit_queue.as_str().into(),
                lapin::options::QueueDeclareOptions::default(),
                lapin::types::FieldTable::default(),
            )
            .await
            .unwrap();
        (conn, channel)
    });

    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    fnhost_ok(cwd, &["init", "myapp", "--worker-runtime", "node"]);
    for (template, name) in [
        ("queue", "Orders"),
        ("blob", "Images"),
        ("rabbitmq", rabbit_fn.as_str()),
    ] {
        fnhost_ok(
            cwd,
            &["new", "--template", template, "--name", name, "myapp"],
        );
    }
    let settings_path = cwd.join("myapp/local.settings.json");
    let mut settings: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&settings_path).unwrap()).unwrap();
    settings["Values"]["AzureWebJobsStorage"] = azurite.connection_string().into();
    settings["Values"]["RabbitMQConnection"] = rabbit_uri.clone().into();
    std::fs::write(&settings_path, settings.to_string()).unwrap();

    let served = serve_with(cwd, "myapp", &[("FNHOST_BLOB_SCAN_INTERVAL", "0.2")]);
    let mut seen = String::new();
    wait_log(
        &served,
        &mut seen,
        "listening to queue orders-items for Orders",
    );
    wait_log(
        &served,
        &mut seen,
        "listening to blob container images for Images",
    );
    wait_log(
        &served,
        &mut seen,
        &format!("listening to rabbitMQ queue {rabbit_queue} for {rabbit_fn}"),
    );
    rt.block_on(async {
        let q = azurite.service().queue("orders-items");
        q.create().await.unwrap();
        q.put(&encode_message("order 42", MessageEncoding::Base64), None)
            .await
            .unwrap();
        let c = azurite.blobs().container("images");
        c.create().await.unwrap();
        c.blob("cat.png")
            .put(&b"12345"[..], PutOptions::default())
            .await
            .unwrap();
        channel
            .basic_publish(
                "".into(),
                rabbit_queue.as_str().into(),
                lapin::options::BasicPublishOptions::default(),
                b"job 7",
                lapin::BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    });
    wait_log(
        &served,
        &mut seen,
        "Storage queue function processed work item: order 42",
    );
    wait_log(
        &served,
        &mut seen,
        "Storage blob function processed blob \"cat.png\" with size 5 bytes",
    );
    wait_log(
        &served,
        &mut seen,
        "RabbitMQ function processed message: job 7",
    );
    drop(served);
    rt.block_on(async {
        let _ = channel
            .queue_delete(
                rabbit_queue.as_str().into(),
                lapin::options::QueueDeleteOptions::default(),
            )
            .await;
        let _ = conn.close(200, "OK".into()).await;
        azurite.stop().await;
    });
}
