//! The PIV card protocol (NIST SP 800-73-4 plus YubiKey's extensions), as
//! bytes only: no I/O happens in this module.
//!
//! Both sides of the wire use it: the PIV client (`crate::piv_client`), which
//! builds commands and parses responses for real YubiKeys, and the emulator's
//! APDU front end (`crate::emulator`), which parses commands and builds
//! responses. Sharing one definition of every instruction, tag and object id
//! keeps the two sides from drifting apart.

pub mod apdu;
pub mod mgmt_crypto;
pub mod sign_input;
pub mod tlv;

/// The PIV application identifier (truncated form accepted by SELECT).
pub const PIV_AID: [u8; 5] = [0xa0, 0x00, 0x00, 0x03, 0x08];
/// The full PIV AID with version, as returned in the application property template.
pub const PIV_AID_FULL: [u8; 11] = [
    0xa0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00,
];
/// YubiKey Management application (device info, used by ykman).
pub const MANAGEMENT_AID: [u8; 8] = [0xa0, 0x00, 0x00, 0x05, 0x27, 0x47, 0x11, 0x17];
/// YubiKey OTP application.
pub const OTP_AID: [u8; 7] = [0xa0, 0x00, 0x00, 0x05, 0x27, 0x20, 0x01];

/// Instruction bytes.
pub mod ins {
    /// VERIFY (PIN).
    pub const VERIFY: u8 = 0x20;
    /// CHANGE REFERENCE DATA (PIN or PUK).
    pub const CHANGE_REFERENCE_DATA: u8 = 0x24;
    /// RESET RETRY COUNTER (unblock PIN with PUK).
    pub const RESET_RETRY_COUNTER: u8 = 0x2c;
    /// GENERATE ASYMMETRIC KEY PAIR.
    pub const GENERATE_ASYMMETRIC: u8 = 0x47;
    /// GENERAL AUTHENTICATE (sign, management key authentication).
    pub const GENERAL_AUTHENTICATE: u8 = 0x87;
    /// SELECT.
    pub const SELECT: u8 = 0xa4;
    /// GET RESPONSE.
    pub const GET_RESPONSE: u8 = 0xc0;
    /// GET DATA.
    pub const GET_DATA: u8 = 0xcb;
    /// PUT DATA.
    pub const PUT_DATA: u8 = 0xdb;
    /// YubiKey: GET METADATA.
    pub const GET_METADATA: u8 = 0xf7;
    /// YubiKey: GET SERIAL.
    pub const GET_SERIAL: u8 = 0xf8;
    /// YubiKey: ATTEST.
    pub const ATTEST: u8 = 0xf9;
    /// YubiKey: SET PIN RETRIES.
    pub const SET_PIN_RETRIES: u8 = 0xfa;
    /// YubiKey: RESET (PIV applet).
    pub const RESET: u8 = 0xfb;
    /// YubiKey: GET VERSION.
    pub const GET_VERSION: u8 = 0xfd;
    /// YubiKey: IMPORT ASYMMETRIC KEY.
    pub const IMPORT_KEY: u8 = 0xfe;
    /// YubiKey: SET MANAGEMENT KEY.
    pub const SET_MANAGEMENT_KEY: u8 = 0xff;
}

/// Key references that are not key slots.
pub mod key_ref {
    /// The PIV application PIN.
    pub const PIN: u8 = 0x80;
    /// The PIN unblocking key.
    pub const PUK: u8 = 0x81;
    /// The card management key (9B).
    pub const MANAGEMENT: u8 = 0x9b;
}

/// PIV data object identifiers (the value of tag 5C in GET/PUT DATA).
pub mod object {
    /// Discovery object (a one-byte tag id).
    pub const DISCOVERY: u32 = 0x7e;
    /// Card Capability Container.
    pub const CCC: u32 = 0x5f_c1_07;
    /// Card Holder Unique Identifier.
    pub const CHUID: u32 = 0x5f_c1_02;
    /// Security object.
    pub const SECURITY: u32 = 0x5f_c1_06;
    /// Printed information (YubiKey keeps the PIN-protected management key here).
    pub const PRINTED: u32 = 0x5f_c1_09;
    /// Key history.
    pub const KEY_HISTORY: u32 = 0x5f_c1_0c;
    /// YubiKey ADMIN DATA (PUK-blocked flag, PIN-protected management key flag).
    pub const ADMIN_DATA: u32 = 0x5f_ff_00;
    /// YubiKey attestation certificate (slot f9).
    pub const ATTESTATION: u32 = 0x5f_ff_01;
}

/// Management key algorithm ids (P1 of GENERAL AUTHENTICATE with key 9B,
/// and metadata tag 01 for 9B).
pub mod mgmt_alg {
    /// Three-key 3DES (default before firmware 5.7).
    pub const TDES: u8 = 0x03;
    /// AES-128.
    pub const AES128: u8 = 0x08;
    /// AES-192 (default from firmware 5.7).
    pub const AES192: u8 = 0x0a;
    /// AES-256.
    pub const AES256: u8 = 0x0c;
}

/// Tags used inside PIV and YubiKey command and response data.
pub mod tag {
    /// Tag list in GET DATA / PUT DATA.
    pub const OBJECT_ID: u32 = 0x5c;
    /// Data object contents.
    pub const OBJECT_DATA: u32 = 0x53;
    /// Certificate inside a certificate object.
    pub const CERTIFICATE: u32 = 0x70;
    /// CertInfo (compression flag) inside a certificate object.
    pub const CERT_INFO: u32 = 0x71;
    /// Error detection code (LRC) inside a certificate object.
    pub const ERROR_DETECTION: u32 = 0xfe;
    /// Dynamic authentication template (GENERAL AUTHENTICATE).
    pub const DYN_AUTH: u32 = 0x7c;
    /// Witness (GENERAL AUTHENTICATE).
    pub const WITNESS: u32 = 0x80;
    /// Challenge (GENERAL AUTHENTICATE).
    pub const CHALLENGE: u32 = 0x81;
    /// Response (GENERAL AUTHENTICATE).
    pub const RESPONSE: u32 = 0x82;
    /// Exponentiation (ECDH) (GENERAL AUTHENTICATE).
    pub const EXPONENTIATION: u32 = 0x85;
    /// Control reference template (GENERATE ASYMMETRIC).
    pub const CONTROL_REFERENCE: u32 = 0xac;
    /// Algorithm inside the control reference template.
    pub const ALGORITHM: u32 = 0x80;
    /// PIN policy (YubiKey).
    pub const PIN_POLICY: u32 = 0xaa;
    /// Touch policy (YubiKey).
    pub const TOUCH_POLICY: u32 = 0xab;
    /// Public key template (GENERATE ASYMMETRIC response).
    pub const PUBLIC_KEY_TEMPLATE: u32 = 0x7f49;
    /// EC point (or Ed25519/X25519 public key) inside the public key template.
    pub const EC_POINT: u32 = 0x86;
    /// RSA modulus inside the public key template.
    pub const RSA_MODULUS: u32 = 0x81;
    /// RSA public exponent inside the public key template.
    pub const RSA_EXPONENT: u32 = 0x82;
}

/// GET METADATA (F7) response tags.
pub mod metadata_tag {
    /// Algorithm id.
    pub const ALGORITHM: u32 = 0x01;
    /// Two bytes: PIN policy, touch policy.
    pub const POLICY: u32 = 0x02;
    /// Origin: 1 generated, 2 imported.
    pub const ORIGIN: u32 = 0x03;
    /// Public key (the contents of a 7F49 template).
    pub const PUBLIC_KEY: u32 = 0x04;
    /// PIN/PUK/management key: 1 if still the factory default.
    pub const IS_DEFAULT: u32 = 0x05;
    /// PIN/PUK: total and remaining retries.
    pub const RETRIES: u32 = 0x06;
}

/// PINs and PUKs are padded to 8 bytes with this.
pub const PIN_PAD: u8 = 0xff;
/// Maximum size of a data object the YubiKey stores (firmware 5).
pub const MAX_OBJECT_SIZE: usize = 3052;
