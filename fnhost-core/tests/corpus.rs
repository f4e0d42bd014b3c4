//! The corpus of real function.json and host.json files (kept beside the
//! project in `../shared/corpus`, or where `FNHOST_CORPUS` points), checked
//! document by document against its verdicts in `expected.json`.
//!
//! Where the corpus is absent (a user's fresh clone) the tests say that they
//! skipped and why; under CI (`CI=true`) an absent corpus is a failure.

use std::fs;
use std::path::{Path, PathBuf};

use fnhost_core::{Code, Diagnostics, FunctionApp, FunctionConfig, HostConfig};
use serde_json::Value;

fn corpus_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("FNHOST_CORPUS") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"),
    };
    if dir.join("expected.json").is_file() {
        return Some(dir);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !ci,
        "the corpus is missing at {} (set FNHOST_CORPUS); under CI it must be present",
        dir.display()
    );
    eprintln!(
        "SKIPPED: the corpus is not at {} (set FNHOST_CORPUS to run these tests)",
        dir.display()
    );
    None
}

fn documents(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            documents(&path, out);
        } else if matches!(
            path.file_name().and_then(|n| n.to_str()),
            Some("function.json" | "host.json")
        ) {
            out.push(path);
        }
    }
}

/// The code a rejection reason of expected.json stands for.
fn code_for(reason: &str) -> Code {
    let r = reason.to_ascii_lowercase();
    if r.contains("not valid json") || r.contains("empty file") {
        Code::JsonSyntax
    } else if r.contains("direction") {
        Code::BindingDirection
    } else if r.contains("two trigger") || r.contains("multiple trigger") {
        Code::MultipleTriggers
    } else if r.contains("without a name") || r.contains("binding name") {
        Code::BindingName
    } else {
        panic!("a reason the test does not know yet: {reason}")
    }
}

fn check(path: &Path) -> Result<(), Diagnostics> {
    let bytes = fs::read(path).expect("readable");
    let text = String::from_utf8(bytes).expect("UTF-8");
    if path.file_name().is_some_and(|n| n == "host.json") {
        HostConfig::parse(&text).map(|_| ())
    } else {
        FunctionConfig::parse(&text).map(|_| ())
    }
}

/// The corpus's expected.json.
fn expected(dir: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(dir.join("expected.json")).expect("read"))
        .expect("expected.json is JSON")
}

#[test]
fn every_document_gets_its_verdict() {
    let Some(dir) = corpus_dir() else { return };
    let expected = expected(&dir);
    let reject = expected["reject"].as_object().expect("reject map");
    let mut docs = Vec::new();
    documents(&dir, &mut docs);
    docs.sort();
    assert!(docs.len() > 300, "only {} documents found", docs.len());

    let mut wrong = Vec::new();
    let (mut accepted, mut rejected) = (0, 0);
    for path in &docs {
        let rel = path
            .strip_prefix(&dir)
            .expect("inside")
            .to_string_lossy()
            .replace('\\', "/");
        match (check(path), reject.get(&rel)) {
            (Ok(()), None) => accepted += 1,
            (Err(diags), None) => wrong.push(format!(
                "{rel}: rejected, but accepted in expected.json:\n{diags}"
            )),
            (Ok(()), Some(reason)) => wrong.push(format!(
                "{rel}: accepted, but expected.json rejects it: {reason}"
            )),
            (Err(diags), Some(reason)) => {
                let want = code_for(reason.as_str().unwrap_or_default());
                if diags.errors().any(|d| d.code == want) {
                    rejected += 1;
                } else {
                    wrong.push(format!(
                        "{rel}: rejected, but not for '{reason}' ({want}):\n{diags}"
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong verdicts:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(
        rejected,
        reject.len(),
        "every listed file was found and rejected"
    );
    eprintln!("corpus: {accepted} accepted, {rejected} rejected as expected");
}

#[test]
fn app_level_problems_are_flagged_when_the_app_loads() {
    let Some(dir) = corpus_dir() else { return };
    let expected = expected(&dir);
    let app_level = expected["app_level"].as_object().expect("app_level map");
    assert!(!app_level.is_empty());
    for (rel, reason) in app_level {
        let file = dir.join(rel);
        let function_dir = file.parent().expect("function folder");
        let name = function_dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name");
        let app_root = function_dir.parent().expect("app root");
        let app = FunctionApp::loader(app_root)
            .with_environment(false)
            .load()
            .expect("loads");
        let reason = reason.as_str().unwrap_or_default();
        assert!(
            reason.contains("outside the app root"),
            "a reason the test does not know: {reason}"
        );
        let flagged = app
            .diagnostics()
            .errors()
            .any(|d| d.code == Code::ScriptFileOutside && d.function.as_deref() == Some(name));
        assert!(
            flagged,
            "{rel}: not flagged for '{reason}':\n{}",
            app.diagnostics()
        );
        assert!(app.function(name).is_none(), "{name} must not load");
    }
}
