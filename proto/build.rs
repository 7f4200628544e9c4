//! Generate the signer.v1 messages, client and server once, plus the encoded
//! file descriptor set the daemon serves through gRPC reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("signer_v1_descriptor.bin"))
        .compile_protos(&["signer/v1/signer.proto"], &["."])?;
    Ok(())
}
