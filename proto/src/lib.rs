//! The `signer.v1` gRPC contract.

#![forbid(unsafe_code)]
