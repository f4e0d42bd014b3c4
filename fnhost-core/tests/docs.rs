//! The documentation that is a contract stays in step with the code.

use fnhost_core::Code;

#[test]
fn every_diagnostic_code_is_documented() {
    let doc = include_str!("../../docs/diagnostics.md");
    let missing: Vec<&str> = Code::ALL
        .iter()
        .map(|c| c.as_str())
        .filter(|c| !doc.contains(&format!("| {c} |")))
        .collect();
    assert!(missing.is_empty(), "docs/diagnostics.md lacks {missing:?}");
}
