//! Generate the client of notary-signer's `proto.Signer` / `proto.KeyManagement`
//! services from our own minimal description of them (proto/notary_signer.proto).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(&["proto/notary_signer.proto"], &["proto"])?;
    Ok(())
}
