//! The conformance suites run against fnhost's own native executor, and
//! catch an executor that breaks the contract.
#![cfg(feature = "testkit")]

use std::fs;
use std::sync::Arc;

use fnhost_core::invoke::{BoxFuture, ExecutorError, FunctionInfo};
use fnhost_core::testkit::check_executor;
use fnhost_core::{Executor, FunctionApp, Host, Invocation, InvocationResult, NativeExecutor};

fn echo_app() -> (tempfile::TempDir, FunctionApp) {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(
        dir.path().join("host.json"),
        r#"{"version": "2.0", "customHandler": {"description": {"defaultExecutablePath": "x"}}}"#,
    )
    .expect("host");
    fs::create_dir_all(dir.path().join("Echo")).expect("mkdir");
    fs::write(
        dir.path().join("Echo/function.json"),
        r#"{"bindings": [{"type": "manualTrigger", "direction": "in", "name": "input"}]}"#,
    )
    .expect("function.json");
    let app = FunctionApp::load(dir.path()).expect("loads");
    (dir, app)
}

#[tokio::test]
async fn the_native_executor_conforms() {
    let (_dir, app) = echo_app();
    let native = NativeExecutor::new().function("Echo", |inv: Invocation| async move {
        tokio::task::yield_now().await;
        Ok(InvocationResult::returning(inv.trigger))
    });
    let host = Arc::new(Host::builder().native(native).build(app));
    check_executor(host).await.expect("conforms");
}

/// Answers every invocation with the same value: not an echo.
#[derive(Debug)]
struct Stuck;

impl Executor for Stuck {
    fn invoke<'a>(
        &'a self,
        _function: &'a FunctionInfo,
        _invocation: Invocation,
    ) -> BoxFuture<'a, Result<InvocationResult, ExecutorError>> {
        Box::pin(async { Ok(InvocationResult::returning(serde_json::json!("same"))) })
    }
}

#[tokio::test]
async fn a_broken_executor_fails_the_suite() {
    let (_dir, app) = echo_app();
    let host = Arc::new(
        Host::builder()
            .executor_for("Echo", Arc::new(Stuck))
            .build(app),
    );
    let failures = check_executor(host).await.expect_err("must not conform");
    assert!(
        failures
            .0
            .iter()
            .any(|f| f.contains("concurrent invocation")),
        "{failures}"
    );
}

mod sources {
    use std::fs;
    use std::path::Path;

    use fnhost_core::source::{SourceError, SourceProvider, SourceSnapshot, SourceSpec};
    use fnhost_core::testkit::{SourceFixture, check_source_provider};

    /// Copies the folder as it is, metadata included, and names every
    /// version by its file count: two mistakes the suite must catch.
    #[derive(Debug)]
    struct Careless;

    fn copy(from: &Path, to: &Path, count: &mut usize) -> std::io::Result<()> {
        for e in fs::read_dir(from)? {
            let e = e?;
            let target = to.join(e.file_name());
            if e.file_type()?.is_dir() {
                fs::create_dir_all(&target)?;
                copy(&e.path(), &target, count)?;
            } else {
                *count += 1;
                fs::copy(e.path(), target)?;
            }
        }
        Ok(())
    }

    impl SourceProvider for Careless {
        fn name(&self) -> &str {
            "careless"
        }
        fn head(&self, spec: &SourceSpec) -> Result<String, SourceError> {
            let tmp =
                tempfile::tempdir().map_err(|e| SourceError::other("careless", e.to_string()))?;
            self.fetch(spec, tmp.path()).map(|s| s.id)
        }
        fn fetch(&self, spec: &SourceSpec, into: &Path) -> Result<SourceSnapshot, SourceError> {
            let mut count = 0;
            copy(Path::new(&spec.location), into, &mut count)
                .map_err(|e| SourceError::other("careless", e.to_string()))?;
            Ok(SourceSnapshot::new(count.to_string()))
        }
    }

    struct Folder(tempfile::TempDir);

    impl SourceFixture for Folder {
        fn spec(&self) -> SourceSpec {
            SourceSpec::new(self.0.path().to_string_lossy())
        }
        fn publish(
            &mut self,
            files: &[(&str, &[u8])],
            _m: &str,
        ) -> Result<(), Box<dyn std::error::Error>> {
            for e in fs::read_dir(self.0.path())? {
                let p = e?.path();
                if p.file_name().is_some_and(|n| n != ".git") {
                    if p.is_dir() {
                        fs::remove_dir_all(&p)?
                    } else {
                        fs::remove_file(&p)?
                    }
                }
            }
            fs::create_dir_all(self.0.path().join(".git"))?;
            fs::write(self.0.path().join(".git/HEAD"), "ref: refs/heads/main\n")?;
            for (path, content) in files {
                let t = self.0.path().join(path);
                fs::create_dir_all(t.parent().ok_or("parent")?)?;
                fs::write(t, content)?;
            }
            Ok(())
        }
        fn missing(&self) -> SourceSpec {
            SourceSpec::new(self.0.path().join("missing").to_string_lossy())
        }
    }

    #[test]
    fn the_source_suite_catches_metadata_and_ids_that_do_not_move() {
        let mut fixture = Folder(tempfile::tempdir().expect("tempdir"));
        let failures =
            check_source_provider(&Careless, &mut fixture).expect_err("must not conform");
        let text = failures.to_string();
        assert!(text.contains(".git/HEAD was written"), "{text}");
        assert!(text.contains("head() did not move"), "{text}");
    }
}

mod builds {
    use std::fs;
    use std::path::Path;

    use fnhost_core::build::{BuildContext, BuildError, BuildOutput, BuildProvider};
    use fnhost_core::testkit::{BuildCase, BuildFixture, check_build_provider};

    /// Builds into the folder beside the source (the live app, as far as it
    /// knows), logs nothing, and reports its failures under another name:
    /// three mistakes the suite must catch.
    #[derive(Debug)]
    struct Reckless;

    impl BuildProvider for Reckless {
        fn name(&self) -> &str {
            "reckless"
        }
        fn build(&self, ctx: &BuildContext<'_>) -> Result<BuildOutput, BuildError> {
            if ctx.source_dir.join("fail").exists() {
                return Err(BuildError::other("someone else", "failed"));
            }
            let out = ctx.source_dir.join("../live");
            fs::write(out.join("built"), "yes")
                .map_err(|e| BuildError::other("reckless", e.to_string()))?;
            Ok(BuildOutput {
                dir: out,
                summary: "built".to_owned(),
            })
        }
    }

    struct Sources;

    impl BuildFixture for Sources {
        fn write_source(
            &mut self,
            case: BuildCase,
            dir: &Path,
        ) -> Result<bool, Box<dyn std::error::Error>> {
            match case {
                BuildCase::Succeeds => fs::write(dir.join("host.json"), "{}")?,
                BuildCase::Fails => fs::write(dir.join("fail"), "")?,
                _ => return Ok(false),
            }
            Ok(true)
        }
    }

    #[test]
    fn the_build_suite_catches_writes_outside_and_wrong_names() {
        let failures = check_build_provider(&Reckless, &mut Sources).expect_err("must not conform");
        let text = failures.to_string();
        assert!(
            text.contains("outside the source and temporary folders"),
            "{text}"
        );
        assert!(text.contains("wrote outside"), "{text}");
        assert!(text.contains("nothing was logged"), "{text}");
        assert!(text.contains("names provider 'someone else'"), "{text}");
    }
}
