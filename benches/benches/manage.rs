//! Management endpoint benchmark: a zipdeploy of a 10,000-file app
//! (FNHOST_BENCH_QUICK: 500) through `POST /api/zipdeploy` with curl,
//! against the same zip deployed through the library, measured in the same
//! run. Each round deploys into fresh homes (first deployments, same
//! durability), so neither side profits from blobs stored before.
//! Target: the endpoint within 1.5x of the library.
//! Run: `cargo bench -p fnhost-benches --bench manage`.

#![allow(clippy::unwrap_used)] // a benchmark stops on what it does not expect

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use fnhost_benches::{format_duration, quick, scratch_dir};
use fnhost_deploy::manage::Manage;
use fnhost_deploy::testkit::ManageThread;
use fnhost_deploy::{Content, DeployRequest, Durability, Site};

const HOST_JSON: &str = r#"{ "version": "2.0", "customHandler": { "description": { "defaultExecutablePath": "handler" } } }"#;
const HTTP_FUNCTION: &str = r#"{ "bindings": [
  { "type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "anonymous", "methods": ["get"] },
  { "type": "http", "direction": "out", "name": "res" } ] }"#;
const PASS: &str = "bench-password";

fn make_zip(path: &Path, files: usize) {
    use zip::write::SimpleFileOptions;
    let mut z = zip::ZipWriter::new(std::io::BufWriter::new(fs::File::create(path).unwrap()));
    let o = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    z.start_file("host.json", o).unwrap();
    z.write_all(HOST_JSON.as_bytes()).unwrap();
    z.start_file("hello/function.json", o).unwrap();
    z.write_all(HTTP_FUNCTION.as_bytes()).unwrap();
    let mut block = vec![0u8; 4096];
    for i in 0..files {
        let seed = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for (j, b) in block.iter_mut().enumerate() {
            *b = (seed >> ((j % 8) * 8)) as u8 ^ (j as u8);
        }
        z.start_file(format!("lib/d{:03}/f{i:05}.bin", i % 100), o)
            .unwrap();
        z.write_all(&block).unwrap();
    }
    z.finish().unwrap();
}

fn fresh_site(dir: &Path) -> Site {
    let site = Site::open(dir)
        .unwrap()
        .with_durability(Durability::Process);
    site.create_app("bench").unwrap();
    site.set_credentials("bench", "deployer", PASS).unwrap();
    site
}

fn main() {
    let files = if quick() { 500 } else { 10_000 };
    let rounds = if quick() { 3 } else { 5 };
    let tmp = scratch_dir();
    let zip = tmp.path().join("app.zip");
    make_zip(&zip, files);
    let zip_size = fs::metadata(&zip).unwrap().len();

    let mut lib = Vec::new();
    let mut http = Vec::new();
    for round in 0..rounds {
        // The library.
        let site = fresh_site(&tmp.path().join(format!("lib-{round}")));
        let t = Instant::now();
        let out = site
            .deploy(DeployRequest::new("bench", Content::Zip(zip.clone())))
            .unwrap();
        lib.push(t.elapsed());
        assert_eq!(out.deployment.files, files as u64 + 2);

        // The endpoint, with curl.
        let site = fresh_site(&tmp.path().join(format!("http-{round}")));
        let server = ManageThread::start(Manage::new(site)).unwrap();
        let addr = server.addr();
        let t = Instant::now();
        let out = Command::new("curl")
            .args([
                "-s",
                "-S",
                "--max-time",
                "600",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .args(["-u", &format!("deployer:{PASS}"), "--data-binary"])
            .arg(format!("@{}", zip.display()))
            .arg(format!("http://{addr}/apps/bench/api/zipdeploy"))
            .output()
            .unwrap();
        http.push(t.elapsed());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
        drop(server);
    }
    lib.sort();
    http.sort();
    let (l, h) = (lib[lib.len() / 2], http[http.len() / 2]);
    let ratio = h.as_secs_f64() / l.as_secs_f64();
    println!(
        "== manage benchmark: zipdeploy of {files} files of 4 KiB (+2), zip {} KiB, median of {rounds}, FNHOST_BENCH_QUICK={}",
        zip_size / 1024,
        quick()
    );
    println!(
        "library deploy of the zip (baseline): {}",
        format_duration(l)
    );
    println!(
        "POST /api/zipdeploy with curl:        {}",
        format_duration(h)
    );
    println!(
        "ratio: {ratio:.2}x the library (target <= 1.5x: {})",
        if ratio <= 1.5 { "MET" } else { "NOT MET" }
    );
}
