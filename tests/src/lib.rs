//! Harness for end-to-end tests (private pcscd + vpcd, real client tools).

#![forbid(unsafe_code)]
