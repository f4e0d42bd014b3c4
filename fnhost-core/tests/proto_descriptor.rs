//! fnhost's FunctionRpc protocol file against the descriptor Microsoft
//! publishes: the wheel `azure-functions-runtime-v1` on PyPI ships the
//! generated `*_pb2.py` modules, each holding its serialized
//! `FileDescriptorProto`. Every message, field (name, number, type, label,
//! message type, oneof) and enum value there must be in fnhost's copy, the
//! same; a drift fails here.
//!
//! The wheel's path comes from `FNHOST_PROTO_WHEEL` (scripts/test.sh
//! downloads it); without it the test says it skipped, and under
//! `CI=true` that is a failure.

#![cfg(feature = "workers")]
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Read;

use prost::Message;
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorProto, FileDescriptorSet};

/// The generated modules in the wheel.
const MODULES: [&str; 3] = [
    "tests/protos/FunctionRpc_pb2.py",
    "tests/protos/shared/NullableTypes_pb2.py",
    "tests/protos/identity/ClaimsIdentityRpc_pb2.py",
];

/// Decodes a Python bytes literal body (between the quotes).
fn python_bytes(literal: &str) -> Vec<u8> {
    let b = literal.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let c = b[i + 1];
        i += 2;
        match c {
            b'x' => {
                let hex = std::str::from_utf8(&b[i..i + 2]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 2;
            }
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                for _ in 0..2 {
                    if i < b.len() && (b'0'..=b'7').contains(&b[i]) {
                        v = v * 8 + u32::from(b[i] - b'0');
                        i += 1;
                    }
                }
                out.push(v as u8);
            }
            other => out.push(other),
        }
    }
    out
}

/// The serialized descriptor in a generated module.
fn descriptor_in(module: &str) -> FileDescriptorProto {
    let start = module
        .find("AddSerializedFile(b'")
        .expect("the module adds a serialized file")
        + "AddSerializedFile(b'".len();
    let end = start + module[start..].find("')").expect("the literal ends");
    FileDescriptorProto::decode(python_bytes(&module[start..end]).as_slice()).unwrap()
}

/// Every message and enum of a file, by simple dotted name (package
/// dropped: fnhost keeps all in one package).
fn index(
    files: &[FileDescriptorProto],
) -> (
    BTreeMap<String, DescriptorProto>,
    BTreeMap<String, EnumDescriptorProto>,
) {
    fn walk(
        prefix: &str,
        m: &DescriptorProto,
        msgs: &mut BTreeMap<String, DescriptorProto>,
        enums: &mut BTreeMap<String, EnumDescriptorProto>,
    ) {
        let name = format!("{prefix}{}", m.name());
        for e in &m.enum_type {
            enums.insert(format!("{name}.{}", e.name()), e.clone());
        }
        for n in &m.nested_type {
            walk(&format!("{name}."), n, msgs, enums);
        }
        msgs.insert(name, m.clone());
    }
    let (mut msgs, mut enums) = (BTreeMap::new(), BTreeMap::new());
    for f in files {
        for m in &f.message_type {
            walk("", m, &mut msgs, &mut enums);
        }
        for e in &f.enum_type {
            enums.insert(e.name().to_owned(), e.clone());
        }
    }
    (msgs, enums)
}

/// `.AzureFunctionsRpcMessages.RpcHttp` and `.RpcHttp` are the same type
/// here: the last dotted parts after the package.
fn simple_type(type_name: &str) -> String {
    type_name
        .trim_start_matches('.')
        .trim_start_matches("AzureFunctionsRpcMessages.")
        .to_owned()
}

#[test]
fn the_protocol_file_matches_microsofts_published_descriptor() {
    let Some(wheel) = std::env::var_os("FNHOST_PROTO_WHEEL") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "FNHOST_PROTO_WHEEL is not set under CI: scripts/test.sh downloads azure-functions-runtime-v1 and sets it"
        );
        eprintln!(
            "SKIPPED: FNHOST_PROTO_WHEEL is not set (the wheel azure-functions-runtime-v1==1.2.0 from PyPI); scripts/test.sh sets it"
        );
        return;
    };
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&wheel).unwrap()).unwrap();
    let theirs: Vec<FileDescriptorProto> = MODULES
        .iter()
        .map(|name| {
            let mut text = String::new();
            zip.by_name(name)
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            descriptor_in(&text)
        })
        .collect();
    let ours = FileDescriptorSet::decode(fnhost_core::worker::proto::FILE_DESCRIPTOR_SET)
        .unwrap()
        .file
        .into_iter()
        .filter(|f| f.name() == "function_rpc.proto")
        .collect::<Vec<_>>();
    assert_eq!(ours.len(), 1, "fnhost's descriptor set has its file");

    let (their_msgs, their_enums) = index(&theirs);
    let (our_msgs, our_enums) = index(&ours);
    let mut problems = Vec::new();
    let mut fields_checked = 0;
    for (name, theirs) in &their_msgs {
        let Some(ours) = our_msgs.get(name) else {
            problems.push(format!("message {name} is missing"));
            continue;
        };
        for f in &theirs.field {
            fields_checked += 1;
            let Some(o) = ours.field.iter().find(|o| o.number() == f.number()) else {
                problems.push(format!(
                    "{name}: field {} = {} is missing",
                    f.name(),
                    f.number()
                ));
                continue;
            };
            let oneof = |m: &DescriptorProto, i: Option<i32>| {
                i.map(|i| m.oneof_decl[i as usize].name().to_owned())
            };
            let (a, b) = (
                (
                    f.name(),
                    f.r#type(),
                    f.label(),
                    simple_type(f.type_name()),
                    oneof(theirs, f.oneof_index),
                ),
                (
                    o.name(),
                    o.r#type(),
                    o.label(),
                    simple_type(o.type_name()),
                    oneof(ours, o.oneof_index),
                ),
            );
            if a != b {
                problems.push(format!(
                    "{name} field {}: published {a:?}, fnhost {b:?}",
                    f.number()
                ));
            }
        }
    }
    for (name, theirs) in &their_enums {
        let Some(ours) = our_enums.get(name) else {
            problems.push(format!("enum {name} is missing"));
            continue;
        };
        let values = |e: &EnumDescriptorProto| {
            e.value
                .iter()
                .map(|v| (v.name().to_owned(), v.number()))
                .collect::<Vec<_>>()
        };
        if values(theirs) != values(ours) {
            problems.push(format!(
                "enum {name}: published {:?}, fnhost {:?}",
                values(theirs),
                values(ours)
            ));
        }
    }
    // The service: one bidirectional EventStream.
    let service = &ours[0].service[0];
    let method = &service.method[0];
    assert_eq!(
        (
            service.name(),
            method.name(),
            method.client_streaming(),
            method.server_streaming()
        ),
        ("FunctionRpc", "EventStream", true, true)
    );
    assert!(
        problems.is_empty(),
        "fnhost's function_rpc.proto differs from the published protocol:\n{}",
        problems.join("\n")
    );
    assert!(
        their_msgs.len() > 50 && fields_checked > 150,
        "{} messages, {fields_checked} fields",
        their_msgs.len()
    );
    eprintln!(
        "checked {} messages, {fields_checked} fields and {} enums against {}",
        their_msgs.len(),
        their_enums.len(),
        std::path::Path::new(&wheel).display()
    );
}
