//! The zip provider, and its safe extraction.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use fnhost_core::source::{SourceError, SourceProvider, SourceSpec};
use fnhost_core::testkit::{SourceFixture, assert_source_provider};
use fnhost_deploy::source::ZipSource;
use zip::write::SimpleFileOptions;

struct ZipFixture {
    path: PathBuf,
}

impl SourceFixture for ZipFixture {
    fn spec(&self) -> SourceSpec {
        SourceSpec::new(self.path.to_string_lossy())
    }

    fn publish(
        &mut self,
        files: &[(&str, &[u8])],
        _message: &str,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let mut zip = zip::ZipWriter::new(fs::File::create(&self.path)?);
        for (name, content) in files {
            zip.start_file(*name, SimpleFileOptions::default())?;
            zip.write_all(content)?;
        }
        zip.finish()?;
        Ok(())
    }

    fn missing(&self) -> SourceSpec {
        SourceSpec::new(self.path.with_extension("missing").to_string_lossy())
    }
}

#[test]
fn zip_conforms() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fixture = ZipFixture {
        path: tmp.path().join("app.zip"),
    };
    assert_source_provider(&ZipSource::new(), &mut fixture);
}

/// A zip with stored entries written by hand: names and kinds a well-behaved
/// writer would refuse to make. `(name, content, unix mode)`.
fn raw_zip(path: &Path, entries: &[(&str, &[u8], u32)]) {
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, content, mode) in entries {
        let offset = out.len() as u32;
        let crc = crc32(content);
        let size = content.len() as u32;
        let name_len = name.len() as u16;
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(content);
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&[20, 3, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&name_len.to_le_bytes());
        central.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        central.extend_from_slice(&(mode << 16).to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let central_offset = out.len() as u32;
    let count = entries.len() as u16;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&central_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    fs::write(path, out).unwrap();
}

fn fetch_error(source: &ZipSource, path: &Path) -> String {
    let into = tempfile::tempdir().unwrap();
    match source.fetch(&SourceSpec::new(path.to_string_lossy()), into.path()) {
        Ok(s) => panic!("{} extracted: {s:?}", path.display()),
        Err(e) => e.to_string(),
    }
}

/// An entry of [`raw_zip`]: name, content, unix mode.
type RawEntry<'a> = (&'a str, &'a [u8], u32);

const FILE: u32 = 0o100644;
const LINK: u32 = 0o120777;

#[test]
fn unsafe_entries_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let zip = ZipSource::new();
    let cases: &[(&str, &[RawEntry<'_>], &str)] = &[
        ("dotdot", &[("../evil.txt", b"x", FILE)], "`..`"),
        ("absolute", &[("/tmp/evil.txt", b"x", FILE)], "absolute"),
        ("backslash", &[("..\\evil.txt", b"x", FILE)], "`..`"),
        (
            "duplicate",
            &[("a.txt", b"1", FILE), ("a.txt", b"2", FILE)],
            "twice",
        ),
        (
            "link-out",
            &[("link", b"../../etc/passwd", LINK)],
            "outside the tree",
        ),
        ("link-abs", &[("link", b"/etc/passwd", LINK)], "outside"),
    ];
    for (name, entries, want) in cases {
        let path = tmp.path().join(format!("{name}.zip"));
        raw_zip(&path, entries);
        let message = fetch_error(&zip, &path);
        assert!(message.contains(want), "{name}: {message}");
    }
    assert!(!tmp.path().join("evil.txt").exists());
}

#[test]
fn limits_hold() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("many.zip");
    let entries: Vec<(String, Vec<u8>, u32)> = (0..20)
        .map(|i| (format!("f{i}.txt"), vec![b'x'; 10], FILE))
        .collect();
    let borrowed: Vec<(&str, &[u8], u32)> = entries
        .iter()
        .map(|(n, c, m)| (n.as_str(), c.as_slice(), *m))
        .collect();
    raw_zip(&path, &borrowed);
    let message = fetch_error(&ZipSource::new().with_max_entries(10), &path);
    assert!(message.contains("more than the limit of 10"), "{message}");
    let message = fetch_error(&ZipSource::new().with_max_total_size(150), &path);
    assert!(message.contains("150 bytes"), "{message}");

    // A bomb: 8 MiB of zeros deflated to a few KiB.
    let bomb = tmp.path().join("bomb.zip");
    let mut writer = zip::ZipWriter::new(fs::File::create(&bomb).unwrap());
    writer
        .start_file("zeros.bin", SimpleFileOptions::default())
        .unwrap();
    writer.write_all(&vec![0u8; 8 << 20]).unwrap();
    writer.finish().unwrap();
    let message = fetch_error(&ZipSource::new(), &bomb);
    assert!(message.contains("zip bomb"), "{message}");
    let into = tempfile::tempdir().unwrap();
    ZipSource::new()
        .with_max_ratio(100_000)
        .fetch(&SourceSpec::new(bomb.to_string_lossy()), into.path())
        .unwrap();
}

#[cfg(unix)]
#[test]
fn modes_and_inner_links_are_kept() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("app.zip");
    raw_zip(
        &path,
        &[
            ("bin/handler", b"#!/bin/sh\n", 0o100755),
            ("bin/readme.txt", b"text", FILE),
            ("bin/alias", b"handler", LINK),
        ],
    );
    let into = tempfile::tempdir().unwrap();
    let snapshot = ZipSource::new()
        .fetch(&SourceSpec::new(path.to_string_lossy()), into.path())
        .unwrap();
    assert_eq!(snapshot.id.len(), 64);
    let mode = |p: &str| {
        fs::metadata(into.path().join(p))
            .unwrap()
            .permissions()
            .mode()
    };
    assert_ne!(mode("bin/handler") & 0o111, 0);
    assert_eq!(mode("bin/readme.txt") & 0o111, 0);
    assert_eq!(
        fs::read_link(into.path().join("bin/alias")).unwrap(),
        Path::new("handler")
    );
    fs::write(tmp.path().join("not.zip"), b"hello").unwrap();
    let message = fetch_error(&ZipSource::new(), &tmp.path().join("not.zip"));
    assert!(message.contains("not a valid zip"), "{message}");
    assert!(matches!(
        ZipSource::new().head(&SourceSpec::new(
            tmp.path().join("gone.zip").to_string_lossy()
        )),
        Err(SourceError::NotFound { .. })
    ));
}
