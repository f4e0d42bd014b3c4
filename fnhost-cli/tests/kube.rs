//! `fnhost kube manifests` through the binary, as a newcomer types it
//! (relative paths), with every object validated offline: Kubernetes'
//! JSON schemas (kubernetes-validate), KEDA's ScaledObject schema
//! (@kubernetes-models/keda), the HTTP add-on's fields, each scaler's
//! metadata, and the references between objects (tests/kube/validate.py).
//! No cluster runs here. scripts/test.sh installs the validators.

#![allow(clippy::unwrap_used)] // tests panic on what they do not expect

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use serde_json::Value;

mod support;
use fnhost_testsupport::process::succeeded;
use support::write;

const MANAGER: &str = "http://fnhost-manage.functions:7072";

/// The validators' folders, from scripts/test.sh (or the workspace's
/// `target/fnhost-test-cache`); a test fails saying what is missing.
fn validators() -> (PathBuf, PathBuf) {
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fnhost-test-cache");
    let dir = |var: &str, name: &str| {
        std::env::var_os(var).map_or_else(|| cache.join(name), PathBuf::from)
    };
    let kube = dir("FNHOST_KUBE_VALIDATE_DIR", "kube-validate-1.37.0");
    let keda = dir("FNHOST_KEDA_MODELS_DIR", "keda-models-2.0.0");
    assert!(
        kube.join("installed").exists()
            && keda.join("node_modules/@kubernetes-models/keda").exists(),
        "the manifest validators are missing ({} and {}): scripts/test.sh installs them (kubernetes-validate 1.37.0 from PyPI, @kubernetes-models/keda 2.0.0 from npm)",
        kube.display(),
        keda.display()
    );
    (kube, keda)
}

/// Runs the validator on `yaml`: its exit status, its report, and the
/// objects as JSON.
fn validate(yaml: &Path) -> (bool, String, Vec<Value>) {
    let (kube, keda) = validators();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kube/validate.py");
    let dump = yaml.with_extension("json");
    let out = Command::new(kube.join("venv/bin/python3"))
        .arg(script)
        .arg(keda)
        .arg("--dump")
        .arg(&dump)
        .arg(yaml)
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let objects = fs::read(&dump)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    (out.status.success(), report, objects)
}

fn valid(yaml: &Path) -> Vec<Value> {
    let (ok, report, objects) = validate(yaml);
    assert!(ok, "{} is not valid:\n{report}", yaml.display());
    objects
}

/// `fnhost ARGS` run in `cwd` with the home `.fnhost` there.
fn run(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fnhost"))
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap()
}

/// `fnhost ARGS` run in `cwd` that must stop with a usage error (exit
/// 2) and print nothing on stdout: its stderr.
/// `kube manifests ARGS`, as the arguments of `fnhost`.
fn manifests<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["kube", "manifests"];
    all.extend_from_slice(args);
    all
}

fn refused(cwd: &Path, args: &[&str]) -> String {
    let out = run(cwd, args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(out.stdout.is_empty(), "{args:?}: nothing half-written");
    err
}

fn ok(out: &Output) -> String {
    String::from_utf8_lossy(&succeeded(out).stderr).into_owned()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} among {:?}", names(objects)))
}

fn names(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .map(|o| {
            format!(
                "{} {}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

fn env<'a>(deployment: &'a Value, name: &str) -> Option<&'a Value> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .map(|e| &e["value"])
}

fn decode(secret: &Value, key: &str) -> String {
    let v = secret["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key}"));
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(v).unwrap()).unwrap()
}

fn function(dir: &Path, name: &str, binding: &str) {
    write(
        &dir.join(name).join("function.json"),
        &format!(r#"{{ "bindings": [ {binding} ] }}"#),
    );
}

/// An app with every kind of trigger the manifests split on.
fn make_app(dir: &Path) {
    write(
        &dir.join("host.json"),
        r#"{ "version": "2.0", "customHandler": { "description": { "defaultExecutablePath": "handler" } } }"#,
    );
    write(&dir.join("handler"), "#!/bin/sh\n");
    fs::set_permissions(dir.join("handler"), fs::Permissions::from_mode(0o755)).unwrap();
    write(
        &dir.join("local.settings.json"),
        r#"{ "Values": { "FUNCTIONS_WORKER_RUNTIME": "custom", "QUEUE": "Orders-In",
             "AzureWebJobsMyStorage": "UseDevelopmentStorage=true", "RabbitConn": "amqp://guest:guest@rabbit:5672" } }"#,
    );
    function(
        dir,
        "Api",
        r#"{ "type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "function", "methods": ["get"] },
           { "type": "http", "direction": "out", "name": "res" }"#,
    );
    function(
        dir,
        "Orders",
        r#"{ "type": "queueTrigger", "direction": "in", "name": "m", "queueName": "%QUEUE%", "connection": "MyStorage" }"#,
    );
    function(
        dir,
        "Uploads",
        r#"{ "type": "blobTrigger", "direction": "in", "name": "b", "path": "uploads/in/{name}" }"#,
    );
    function(
        dir,
        "Jobs",
        r#"{ "type": "rabbitMQTrigger", "direction": "in", "name": "j", "queueName": "jobs", "connectionStringSetting": "RabbitConn" }"#,
    );
    function(
        dir,
        "Changes",
        r#"{ "type": "cosmosDBTrigger", "direction": "in", "name": "docs", "connection": "Cosmos", "databaseName": "db", "containerName": "c" }"#,
    );
    function(
        dir,
        "Nightly",
        r#"{ "type": "timerTrigger", "direction": "in", "name": "t", "schedule": "0 0 2 * * *" }"#,
    );
}

/// A scratch folder with the app of [`make_app`] in `orders`.
fn orders_app() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    make_app(&tmp.path().join("orders"));
    tmp
}

#[test]
fn a_folder_app_becomes_valid_kubernetes_and_keda_objects() {
    let tmp = orders_app();
    let stderr = ok(&run(
        tmp.path(),
        &manifests(&[
            "--path",
            "orders",
            "--namespace",
            "fn",
            "--manager",
            MANAGER,
            "--out",
            "k8s",
        ]),
    ));
    assert!(
        stderr.contains("function Changes: KEDA has no scaler for cosmosDBTrigger"),
        "{stderr}"
    );
    let yaml = tmp.path().join("k8s/orders.yaml");
    // It holds the settings and keys: owner-only.
    assert_eq!(
        fs::metadata(&yaml).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let objects = valid(&yaml);
    assert_eq!(
        names(&objects),
        [
            "Secret orders",
            "Secret func-keys-kube-secret-orders",
            "Deployment orders-http",
            "Service orders-http",
            "HTTPScaledObject orders-http",
            "Deployment orders",
            "ScaledObject orders",
            "Deployment orders-timers",
        ]
    );
    assert!(objects.iter().all(|o| o["metadata"]["namespace"] == "fn"));

    // Settings and keys: the keys are those `fnhost serve orders` uses.
    assert_eq!(
        decode(find(&objects, "Secret", "orders"), "QUEUE"),
        "Orders-In"
    );
    let keys = find(&objects, "Secret", "func-keys-kube-secret-orders");
    let local: Value =
        serde_json::from_slice(&fs::read(tmp.path().join("orders/.fnhost/secrets.json")).unwrap())
            .unwrap();
    assert_eq!(
        decode(keys, "functions.Api.default"),
        local["functions"]["Api"]["default"]
    );
    assert_eq!(decode(keys, "host.master"), local["master"]);
    let file: Value = serde_json::from_str(&decode(keys, "secrets.json")).unwrap();
    assert_eq!(file, local);

    // KEDA: one trigger per queue-style function, with its scaler's metadata.
    let scaled = find(&objects, "ScaledObject", "orders");
    let triggers = scaled["spec"]["triggers"].as_array().unwrap();
    let by_type = |t: &str| triggers.iter().find(|x| x["type"] == t).unwrap()["metadata"].clone();
    let queue = by_type("azure-queue");
    assert_eq!(queue["queueName"], "orders-in");
    assert_eq!(queue["connectionFromEnv"], "AzureWebJobsMyStorage");
    let blob = by_type("azure-blob");
    assert_eq!(
        (&blob["blobContainerName"], &blob["blobPrefix"]),
        (&"uploads".into(), &"in/".into())
    );
    assert_eq!(blob["connectionFromEnv"], "AzureWebJobsStorage");
    let rabbit = by_type("rabbitmq");
    assert_eq!(
        (&rabbit["queueName"], &rabbit["hostFromEnv"]),
        (&"jobs".into(), &"RabbitConn".into())
    );
    // The cosmosDB function KEDA cannot see keeps a replica.
    assert!(triggers.iter().any(|t| t["type"] == "cpu"));
    assert_eq!(scaled["spec"]["minReplicaCount"], 1);

    // Each Deployment runs only its own functions.
    let http = find(&objects, "Deployment", "orders-http");
    assert_eq!(
        env(http, "AzureFunctionsJobHost__functions__0").unwrap(),
        "Api"
    );
    assert_eq!(env(http, "AzureWebJobs_Nightly_Disabled").unwrap(), "true");
    assert_eq!(env(http, "AzureWebJobs_Orders_Disabled").unwrap(), "true");
    assert!(
        http["spec"].get("replicas").is_none(),
        "the HTTP add-on owns the count"
    );
    let triggers_d = find(&objects, "Deployment", "orders");
    assert_eq!(
        env(triggers_d, "AzureWebJobs_Api_Disabled").unwrap(),
        "true"
    );
    assert!(env(triggers_d, "AzureWebJobs_Orders_Disabled").is_none());

    // Timers: one replica, never two during a rollout, the app id set.
    let timers = find(&objects, "Deployment", "orders-timers");
    assert_eq!(timers["spec"]["replicas"], 1);
    assert_eq!(timers["spec"]["strategy"]["type"], "Recreate");
    assert_eq!(
        env(timers, "AzureFunctionsJobHost__functions__0").unwrap(),
        "Nightly"
    );
    assert_eq!(
        env(timers, "AzureFunctionsWebHost__hostid").unwrap(),
        "orders"
    );
    assert_eq!(env(timers, "AzureWebJobs_Api_Disabled").unwrap(), "true");

    // The content: `fnhost fetch` in an init container, the token from a Secret.
    let init = &http["spec"]["template"]["spec"]["initContainers"][0];
    let args: Vec<&str> = init["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        [
            "fetch",
            "--manager",
            MANAGER,
            "--token",
            "$(FNHOST_TOKEN)",
            "--app",
            "orders",
            "--dest",
            "/home/site/wwwroot"
        ]
    );
    assert_eq!(
        init["env"][0]["valueFrom"]["secretKeyRef"],
        serde_json::json!({"name": "fnhost-fetch-token", "key": "token"})
    );
    let serve = &http["spec"]["template"]["spec"]["containers"][0]["args"];
    assert_eq!(serve[0], "serve");
    assert_eq!(serve[1], "/home/site/wwwroot");

    // HTTP scaling through the KEDA HTTP add-on, to the Service.
    let hso = find(&objects, "HTTPScaledObject", "orders-http");
    assert_eq!(hso["spec"]["scaleTargetRef"]["service"], "orders-http");
    assert_eq!(hso["spec"]["hosts"][0], "orders");
}

#[test]
fn an_hpa_and_a_dockerfile_when_asked() {
    let tmp = orders_app();
    let stderr = ok(&run(
        tmp.path(),
        &manifests(&[
            "--path",
            "orders",
            "--http-scaling",
            "hpa",
            "--dockerfile",
            "--image",
            "registry.local/orders:1",
            "--min-replicas",
            "2",
            "--out",
            "k8s",
        ]),
    ));
    assert!(
        stderr.contains("docker build -t registry.local/orders:1 k8s"),
        "{stderr}"
    );
    let objects = valid(&tmp.path().join("k8s/orders.yaml"));
    let hpa = find(&objects, "HorizontalPodAutoscaler", "orders-http");
    assert_eq!(hpa["spec"]["minReplicas"], 2);
    assert!(!objects.iter().any(|o| o["kind"] == "HTTPScaledObject"));
    for o in objects.iter().filter(|o| o["kind"] == "Deployment") {
        let pod = &o["spec"]["template"]["spec"];
        assert!(pod.get("initContainers").is_none(), "baked: no fetch");
        assert_eq!(pod["containers"][0]["image"], "registry.local/orders:1");
    }
    let dockerfile = fs::read_to_string(tmp.path().join("k8s/Dockerfile")).unwrap();
    assert!(dockerfile.contains("FROM ${FNHOST_IMAGE}"), "{dockerfile}");
    assert!(
        dockerfile.contains("COPY wwwroot/ /home/site/wwwroot/"),
        "{dockerfile}"
    );
    let root = tmp.path().join("k8s/wwwroot");
    assert!(root.join("Api/function.json").exists());
    assert!(root.join("handler").exists());
    // Settings and keys reach the pods through Secrets, not the image.
    assert!(!root.join("local.settings.json").exists());
    assert!(!root.join(".fnhost").exists());
}

#[test]
fn an_app_of_the_home_uses_its_active_deployment_settings_and_slot() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    make_app(&cwd.join("src"));
    ok(&run(cwd, &["apps", "create", "Shop"]));
    ok(&run(cwd, &["deploy", "Shop", "--dir", "src"]));
    ok(&run(
        cwd,
        &["deploy", "Shop", "--slot", "staging", "--dir", "src"],
    ));
    ok(&run(
        cwd,
        &[
            "settings",
            "set",
            "Shop",
            "QUEUE=shop-orders",
            "AzureWebJobsMyStorage=x",
            "RabbitConn=amqp://r",
        ],
    ));
    ok(&run(
        cwd,
        &[
            "settings",
            "set",
            "Shop",
            "--slot",
            "staging",
            "QUEUE=staged",
            "RabbitConn=amqp://r",
        ],
    ));
    let list: Value =
        serde_json::from_slice(&run(cwd, &["deployments", "Shop", "--json"]).stdout).unwrap();
    let active = list
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["active"] == true && d["slot"] == "production")
        .unwrap_or_else(|| panic!("no active deployment in {list}"))["id"]
        .clone();

    let out = run(
        cwd,
        &manifests(&["Shop", "--manager", MANAGER, "--token", "t0ken"]),
    );
    ok(&out);
    fs::write(cwd.join("shop.yaml"), &out.stdout).unwrap();
    let objects = valid(&cwd.join("shop.yaml"));
    assert_eq!(
        decode(find(&objects, "Secret", "shop"), "QUEUE"),
        "shop-orders"
    );
    assert_eq!(
        find(&objects, "Secret", "fnhost-fetch-token")["stringData"]["token"],
        "t0ken"
    );
    let scaled = find(&objects, "ScaledObject", "shop");
    let queue = scaled["spec"]["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "azure-queue")
        .unwrap();
    assert_eq!(queue["metadata"]["queueName"], "shop-orders");
    let http = find(&objects, "Deployment", "shop-http");
    let meta = &http["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(meta["fnhost.dev/deployment"], active);
    assert!(
        meta["fnhost.dev/content"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(env(http, "WEBSITE_SITE_NAME").unwrap(), "Shop");

    // Another slot: its own names, settings and `--slot` for fetch.
    let out = run(
        cwd,
        &manifests(&[
            "Shop",
            "--slot",
            "staging",
            "--manager",
            MANAGER,
            "--out",
            "k8s",
        ]),
    );
    ok(&out);
    let objects = valid(&cwd.join("k8s/shop-staging.yaml"));
    assert_eq!(
        decode(find(&objects, "Secret", "shop-staging"), "QUEUE"),
        "staged"
    );
    let init = &find(&objects, "Deployment", "shop-staging-http")["spec"]["template"]["spec"]["initContainers"]
        [0];
    let args: Vec<&str> = init["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(&args[5..9], ["--app", "Shop", "--slot", "staging"]);
}

/// The init container's arguments.
fn fetch_args(deployment: &Value) -> Vec<String> {
    deployment["spec"]["template"]["spec"]["initContainers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn an_https_manager_is_trusted_through_its_ca_certificate() {
    let tmp = orders_app();
    let cwd = tmp.path();
    // The manager's CA, with its private key in the same file (as some
    // tools write them): the key never reaches the manifests.
    let (cert, key) = fnhost_testsupport::tls::self_signed(cwd, "manager-ca");
    let cert_pem = fs::read_to_string(&cert).unwrap();
    let bundle = cwd.join("bundle.pem");
    fs::write(
        &bundle,
        format!("{}{cert_pem}", fs::read_to_string(&key).unwrap()),
    )
    .unwrap();
    let https = "https://fnhost-manage.functions:7443";
    ok(&run(
        cwd,
        &manifests(&[
            "--path",
            "orders",
            "--namespace",
            "fn",
            "--manager",
            https,
            "--ca-cert",
            "bundle.pem",
            "--out",
            "k8s",
        ]),
    ));
    let yaml = cwd.join("k8s/orders.yaml");
    let text = fs::read_to_string(&yaml).unwrap();
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    let objects = valid(&yaml);
    // The certificate, as PEM, in a ConfigMap of the namespace.
    let ca = find(&objects, "ConfigMap", "orders-manager-ca");
    assert_eq!(ca["metadata"]["namespace"], "fn");
    assert_eq!(ca["data"]["ca.crt"], cert_pem.as_str());
    let deployments: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "Deployment")
        .collect();
    assert_eq!(deployments.len(), 3);
    for d in deployments {
        // `fnhost fetch --ca-cert` reads it from the mounted ConfigMap.
        let args = fetch_args(d);
        assert_eq!(args[2], https);
        assert_eq!(
            &args[args.len() - 2..],
            ["--ca-cert", "/run/fnhost/manager-ca/ca.crt"]
        );
        let pod = &d["spec"]["template"]["spec"];
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "manager-ca")
            .unwrap();
        assert_eq!(volume["configMap"]["name"], "orders-manager-ca");
        let mounts = &pod["initContainers"][0]["volumeMounts"];
        assert!(
            mounts
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["name"] == "manager-ca"
                    && m["mountPath"] == "/run/fnhost/manager-ca"
                    && m["readOnly"] == true),
            "{mounts}"
        );
        // The server itself does not talk to the manager.
        let served = &pod["containers"][0]["volumeMounts"];
        assert!(
            !served
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["name"] == "manager-ca"),
            "{served}"
        );
    }
    // The validator sees a --ca-cert that names no key of the ConfigMap.
    let bad = cwd.join("bad.yaml");
    fs::write(&bad, text.replacen("ca.crt:", "ca.pem:", 1)).unwrap();
    let (passed, report, _) = validate(&bad);
    assert!(
        !passed && report.contains("not a key of ConfigMap"),
        "{report}"
    );

    // Without --ca-cert, an https manager's certificate must chain to
    // the image's system roots: no ConfigMap, no --ca-cert.
    let out = run(cwd, &manifests(&["--path", "orders", "--manager", https]));
    ok(&out);
    let plain = String::from_utf8(out.stdout).unwrap();
    assert!(
        !plain.contains("ConfigMap") && !plain.contains("--ca-cert"),
        "{plain}"
    );

    // A file that is missing, not PEM, or holds no certificate is refused
    // naming it; so is a CA for an http:// manager. Nothing is written.
    fs::write(cwd.join("notes.txt"), "not a certificate\n").unwrap();
    for (file, manager, says) in [
        ("missing.pem", https, "No such file"),
        ("notes.txt", https, "no CERTIFICATE block"),
        ("manager-ca-key.pem", https, "no CERTIFICATE block"),
        ("bundle.pem", MANAGER, "https://"),
    ] {
        let err = refused(
            cwd,
            &manifests(&["--path", "orders", "--manager", manager, "--ca-cert", file]),
        );
        assert!(err.contains(says), "{file}: {err}");
        if says != "https://" {
            assert!(err.contains(&format!("--ca-cert {file}")), "{err}");
        }
    }
    // Baked into an image, nothing is fetched: no CA to trust.
    let err = refused(
        cwd,
        &manifests(&[
            "--path",
            "orders",
            "--dockerfile",
            "--out",
            "baked",
            "--ca-cert",
            "bundle.pem",
        ]),
    );
    assert!(err.contains("--dockerfile"), "{err}");
    assert!(!cwd.join("baked").exists());
}

#[test]
fn bad_input_is_refused_with_what_to_do() {
    let tmp = orders_app();
    let cwd = tmp.path();
    // A queue trigger without its queue name.
    function(
        &cwd.join("orders"),
        "Orders",
        r#"{ "type": "queueTrigger", "direction": "in", "name": "m", "queueName": "", "connection": "MyStorage" }"#,
    );
    let err = refused(cwd, &manifests(&["--path", "orders", "--manager", MANAGER]));
    assert!(
        err.contains("function Orders") && err.contains("queueName"),
        "{err}"
    );

    // A name Kubernetes cannot take.
    make_app(&cwd.join("9lives"));
    let out = run(cwd, &manifests(&["--path", "9lives", "--manager", MANAGER]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--name"), "{err}");
    ok(&run(
        cwd,
        &manifests(&["--path", "9lives", "--name", "lives", "--manager", MANAGER]),
    ));

    // A setting Kubernetes cannot hold as a Secret key.
    write(
        &cwd.join("9lives/local.settings.json"),
        r#"{ "Values": { "Connection Strings:Main": "x" } }"#,
    );
    let out = run(
        cwd,
        &manifests(&["--path", "9lives", "--name", "lives", "--manager", MANAGER]),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("\"Connection Strings:Main\"") && err.contains("Secret"),
        "{err}"
    );

    // Neither a manager to fetch from nor a Dockerfile.
    let out = run(cwd, &manifests(&["--path", "9lives", "--name", "lives"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--manager"));
}

#[test]
fn the_validator_refuses_what_a_cluster_would() {
    let tmp = orders_app();
    let out = run(
        tmp.path(),
        &manifests(&["--path", "orders", "--manager", MANAGER]),
    );
    ok(&out);
    let good = String::from_utf8(out.stdout).unwrap();
    for (what, from, to) in [
        (
            "a number as text",
            "terminationGracePeriodSeconds: 40",
            "terminationGracePeriodSeconds: forty",
        ),
        ("an unknown field", "  strategy:\n", "  stratagem:\n"),
        (
            "a scaler that does not exist",
            "type: azure-queue",
            "type: azure-queues",
        ),
        (
            "a metadata key the scaler does not read",
            "queueLength:",
            "queueLenght:",
        ),
        (
            "a Service selecting nothing",
            "  selector:\n    app: orders-http\n  ports:",
            "  selector:\n    app: nobody\n  ports:",
        ),
        (
            "an unknown HTTPScaledObject field",
            "scaledownPeriod:",
            "scaleDownPeriod:",
        ),
    ] {
        assert!(good.contains(from), "{what}: {from:?} not in the manifests");
        let bad = tmp.path().join("bad.yaml");
        fs::write(&bad, good.replacen(from, to, 1)).unwrap();
        let (ok, report, _) = validate(&bad);
        assert!(!ok, "{what} passed:\n{report}");
        assert!(report.contains("INVALID"), "{what}:\n{report}");
    }
}

/// Copies a folder (the repository's sample apps, so that their keys
/// are written in the copy, not in the repository).
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            if e.file_name() != "node_modules" && e.file_name() != ".fnhost" {
                copy_dir(&e.path(), &target);
            }
        } else {
            fs::copy(e.path(), &target).unwrap();
        }
    }
}

#[test]
fn every_sample_app_gives_valid_manifests() {
    let tmp = tempfile::tempdir().unwrap();
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/apps");
    let mut checked = Vec::new();
    for e in fs::read_dir(&samples).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        copy_dir(&samples.join(&name), &tmp.path().join(&name));
        let out = run(
            tmp.path(),
            &manifests(&["--path", &name, "--manager", MANAGER]),
        );
        ok(&out);
        let yaml = tmp.path().join(format!("{name}.yaml"));
        fs::write(&yaml, &out.stdout).unwrap();
        let objects = valid(&yaml);
        let http = format!("{name}-http");
        find(&objects, "Deployment", &http);
        checked.push(name);
    }
    assert!(checked.len() >= 5, "{checked:?}");
}
