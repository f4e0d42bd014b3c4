//! The FunctionRpc messages and the tonic server, generated at build time
//! from `proto/function_rpc.proto`.
#![allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used
)]

include!(concat!(env!("OUT_DIR"), "/azure_functions_rpc_messages.rs"));

/// The protocol's `FileDescriptorSet`, encoded (for checking it against
/// other copies of the protocol).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/function_rpc.descriptor"));
