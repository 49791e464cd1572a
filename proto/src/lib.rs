//! The wire contract between mf-agent, mf-coordinator and mfctl: generated gRPC
//! types and services, and the client transport settings both ends must agree
//! on. Nothing else lives here, so both ends depend on this crate and never on
//! each other.

pub mod codec;
pub mod transport;

/// The bytes a command's signature covers: the command encoded with its
/// signature field empty. Both ends compute them with this one function.
pub fn command_signed_bytes(command: &v1::Command) -> Vec<u8> {
    use prost::Message;
    let unsigned = v1::Command {
        signature: Vec::new(),
        ..command.clone()
    };
    unsigned.encode_to_vec()
}

#[allow(clippy::all, clippy::pedantic, missing_docs)] // generated code
pub mod v1 {
    tonic::include_proto!("mf.v1");

    /// The encoded descriptors of every service and message, for gRPC server
    /// reflection (`grpcurl list` and the like).
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/mf_descriptor.bin"));
}
