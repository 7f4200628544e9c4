//! Fuzz harness: the BER-TLV parser the PIV client applies to every card
//! response (`signer_lib::piv::tlv`). Shared by the cargo-fuzz target `tlv`
//! and the seeded-random test `signer-lib/tests/reliability_seeded_parsers.rs`.
//!
//! Checked: no panic; `read_length`, `read`, `parse_all` and `find` agree;
//! every TLV read re-encodes (minimal length) and reads back to the same
//! tag and value; `parse_all` consumes exactly its input.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use signer_lib::piv::tlv;

pub fn run(data: &[u8]) {
    let _ = tlv::read_length(data);
    match tlv::parse_all(data) {
        Ok(all) => {
            let mut total = 0usize;
            let mut rebuilt = Vec::new();
            for t in &all {
                let mut one = Vec::new();
                tlv::write(&mut one, t.tag, t.value)
                    .expect("a value read from 3 length bytes re-encodes");
                let (back, rest) = tlv::read(&one).expect("a re-encoded TLV reads back");
                assert_eq!(back.tag, t.tag, "tag changed by a round trip");
                assert_eq!(back.value, t.value, "value changed by a round trip");
                assert!(rest.is_empty());
                total += t.value.len();
                rebuilt.extend_from_slice(&one);
            }
            assert!(total <= data.len());
            // Re-encoding with minimal lengths never grows the stream.
            assert!(rebuilt.len() <= data.len());
            assert_eq!(tlv::parse_all(&rebuilt).unwrap(), all);
            if let Some(first) = all.first() {
                assert_eq!(tlv::find(data, first.tag).unwrap(), Some(first.value));
                // Nested templates (7C, 7F49, 53, 70...) are parsed the same way.
                let _ = tlv::parse_all(first.value);
            }
        }
        Err(_) => {
            // A stream that fails as a whole fails for `find` too.
            assert!(tlv::find(data, 0x7c).is_err());
        }
    }
}
