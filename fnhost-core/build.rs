//! Compiles the language worker protocol (`proto/function_rpc.proto`) into
//! prost messages and a tonic server when the `workers` feature is on. protox
//! is a protobuf compiler written in Rust, so no `protoc` is needed.

fn main() {
    println!("cargo:rerun-if-changed=proto/function_rpc.proto");
    #[cfg(feature = "workers")]
    compile_protocol();
}

#[cfg(feature = "workers")]
fn compile_protocol() {
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let files = match protox::compile(["function_rpc.proto"], ["proto"]) {
        Ok(f) => f,
        Err(e) => panic!("proto/function_rpc.proto does not compile: {e:?}"),
    };
    // The descriptor set is kept for the test that checks the protocol
    // against Microsoft's published descriptor.
    let encoded = prost::Message::encode_to_vec(&files);
    std::fs::write(out.join("function_rpc.descriptor"), encoded)
        .expect("the build folder is writable");
    if let Err(e) = tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .compile_fds(files)
    {
        panic!("cannot generate the FunctionRpc code: {e}");
    }
}
