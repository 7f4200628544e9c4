//! signerctl (soon).
