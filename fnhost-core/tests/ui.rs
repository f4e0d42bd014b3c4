//! Golden-file tests of app loading: each folder under `tests/ui/` holds an
//! app (`app/`) beside the report fnhost must give for it (`expected.txt`):
//! the functions that load, with their trigger, route or schedule, and every
//! diagnostic. Run with `FNHOST_BLESS=1` to write the reports after a
//! deliberate change, then review the diff.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use fnhost_core::FunctionApp;

fn render(app: &FunctionApp) -> String {
    let mut out = String::from("functions:\n");
    for f in app.functions() {
        let _ = write!(out, "  {} {}", f.name, f.trigger_type());
        if let Some(h) = &f.http {
            let _ = write!(out, " {} [{}] {}", h.path(), h.methods, h.auth_level);
        }
        if let Some(t) = &f.timer {
            let _ = write!(out, " schedule {:?} = {}", t.expression, t.schedule);
        }
        if let Some(s) = &f.script {
            let rel = s.strip_prefix(app.root()).unwrap_or(s);
            let _ = write!(out, " script {}", rel.display());
        }
        if f.disabled {
            out.push_str(" (disabled)");
        }
        out.push('\n');
    }
    out.push_str("diagnostics:\n");
    for d in app.diagnostics() {
        let _ = writeln!(out, "  {d}");
    }
    out
}

#[test]
fn every_case_gives_its_expected_report() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui");
    let bless = std::env::var_os("FNHOST_BLESS").is_some();
    let mut cases: Vec<_> = fs::read_dir(&root)
        .expect("tests/ui exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("app").is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 30, "only {} golden cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let app = FunctionApp::loader(case.join("app"))
            .with_environment(false)
            .load()
            .expect("the case folder loads");
        let actual = render(&app);
        let expected_path = case.join("expected.txt");
        if bless {
            fs::write(&expected_path, &actual).expect("write expected.txt");
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != actual {
            failures.push(format!(
                "--- {}\n--- expected\n{expected}--- actual\n{actual}",
                case.file_name().unwrap_or_default().to_string_lossy()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ (FNHOST_BLESS=1 rewrites them):\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
