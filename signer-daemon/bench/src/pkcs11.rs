//! One PKCS#11 client (the `cryptoki` crate): `C_Sign` with `CKM_ECDSA` on
//! the row's 32-byte digest, one session per client thread. Used for
//! SoftHSM2 (a token initialised with `softhsm2-util` in a private token
//! directory, a P-256 key generated with `C_GenerateKeyPair`) and, when it
//! exists, for our own module in front of the daemon.

use std::path::Path;
use std::process::{Command, Stdio};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use p256::ecdsa::{Signature, VerifyingKey, signature::hazmat::PrehashVerifier};

use crate::load::{Failure, Result, fail};

/// SoftHSM2's module as Debian installs it.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// The name (socket `NAME.sock` in the private directory) of the daemon our
/// PKCS#11 module is pointed at through `SIGNER_SOCKET`.
pub const PKCS11_DAEMON: &str = "pkcs11-daemon";

const USER_PIN: &str = "123456";
const SO_PIN: &str = "12345678";
const LABEL: &str = "signer-bench";

/// A PKCS#11 module, logged in, with a P-256 private key to sign with.
pub struct Module {
    ctx: Pkcs11,
    slot: Slot,
    key: ObjectHandle,
    /// The key, for verification.
    pub public: VerifyingKey,
    // The login lives as long as this session (PKCS#11 logs in the application).
    _login: std::sync::Mutex<Session>,
}

/// The DER of the P-256 curve's OID, as CKA_EC_PARAMS.
const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Make a private SoftHSM2 configuration (a fresh token directory) and run
/// this program again as a child with `SOFTHSM2_CONF` pointing at it,
/// `dir_env` naming the directory and `SIGNER_SOCKET` naming the socket of
/// the daemon our PKCS#11 module will talk to; returns the child's exit code. The
/// directory is removed afterwards.
pub fn run_with_private_softhsm(dir_env: &str) -> Result<i32> {
    let dir = tempfile::Builder::new()
        .prefix("signer-bench-softhsm.")
        .tempdir()
        .map_err(|e| fail("softhsm temp dir", e))?;
    let tokens = dir.path().join("tokens");
    std::fs::create_dir_all(&tokens).map_err(|e| fail("softhsm token dir", e))?;
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .map_err(|e| fail("softhsm2.conf", e))?;
    let exe = std::env::current_exe().map_err(|e| fail("current_exe", e))?;
    let status = Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("SOFTHSM2_CONF", &conf)
        .env(dir_env, dir.path())
        .env(
            "SIGNER_SOCKET",
            dir.path().join(format!("{PKCS11_DAEMON}.sock")),
        )
        .status()
        .map_err(|e| fail("running the benchmark child", e))?;
    Ok(status.code().unwrap_or(1))
}

/// Initialise the token in the private SoftHSM2 directory (`SOFTHSM2_CONF`
/// is already in the environment).
pub fn softhsm_init_token() -> Result<()> {
    if std::env::var_os("SOFTHSM2_CONF").is_none() {
        return Err(Failure("SOFTHSM2_CONF is not set".into()));
    }
    let out = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            LABEL,
            "--so-pin",
            SO_PIN,
            "--pin",
            USER_PIN,
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail("cannot run softhsm2-util (apt-get install softhsm2)", e))?;
    if !out.status.success() {
        return Err(Failure(format!(
            "softhsm2-util --init-token failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

impl Module {
    /// Load SoftHSM2 (after [`softhsm_setup`] set `SOFTHSM2_CONF`), log in and
    /// generate a P-256 key pair on its token.
    pub fn softhsm() -> Result<Module> {
        let ctx = load(Path::new(SOFTHSM_MODULE))?;
        let slot = ctx
            .get_slots_with_initialized_token()
            .map_err(|e| fail("C_GetSlotList", e))?
            .into_iter()
            .find(|s| {
                ctx.get_token_info(*s)
                    .is_ok_and(|t| t.label().trim() == LABEL)
            })
            .ok_or_else(|| Failure(format!("SoftHSM2 has no token labelled {LABEL}")))?;
        let session = ctx
            .open_rw_session(slot)
            .map_err(|e| fail("C_OpenSession", e))?;
        session
            .login(UserType::User, Some(&AuthPin::from(USER_PIN)))
            .map_err(|e| fail("C_Login", e))?;
        let (public, key) = session
            .generate_key_pair(
                &Mechanism::EccKeyPairGen,
                &[
                    Attribute::Token(true),
                    Attribute::Verify(true),
                    Attribute::EcParams(P256_PARAMS.to_vec()),
                ],
                &[
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Sign(true),
                ],
            )
            .map_err(|e| fail("C_GenerateKeyPair", e))?;
        let public = ec_point(&session, public)?;
        Ok(Module {
            ctx,
            slot,
            key,
            public,
            _login: std::sync::Mutex::new(session),
        })
    }

    /// Load `module` (our `libsigner_pkcs11.so`, which reads `SIGNER_SOCKET`
    /// at `C_Initialize`) and use the EC private key of its first token.
    pub fn existing(module: &Path) -> Result<Module> {
        let ctx = load(module)?;
        let slot = ctx
            .get_slots_with_token()
            .map_err(|e| fail("C_GetSlotList", e))?
            .into_iter()
            .next()
            .ok_or_else(|| Failure(format!("{} shows no token", module.display())))?;
        let session = ctx
            .open_ro_session(slot)
            .map_err(|e| fail("C_OpenSession", e))?;
        let find = |class| {
            session
                .find_objects(&[Attribute::Class(class), Attribute::KeyType(KeyType::EC)])
                .map_err(|e| fail("C_FindObjects", e))?
                .into_iter()
                .next()
                .ok_or_else(|| Failure(format!("{} shows no EC key", module.display())))
        };
        let key = find(ObjectClass::PRIVATE_KEY)?;
        let public = ec_point(&session, find(ObjectClass::PUBLIC_KEY)?)?;
        Ok(Module {
            ctx,
            slot,
            key,
            public,
            _login: std::sync::Mutex::new(session),
        })
    }

    /// One client's session.
    pub fn session(&self) -> Result<Session> {
        self.ctx
            .open_ro_session(self.slot)
            .map_err(|e| fail("C_OpenSession", e))
    }

    /// `C_Sign(CKM_ECDSA)` of a digest; returns r‖s.
    pub fn sign(&self, session: &Session, digest: &[u8]) -> Result<Vec<u8>> {
        session
            .sign(&Mechanism::Ecdsa, self.key, digest)
            .map_err(|e| fail("C_Sign", e))
    }

    /// Check r‖s against the digest.
    pub fn verify(&self, digest: &[u8], rs: &[u8]) -> std::result::Result<(), String> {
        let sig = Signature::from_slice(rs).map_err(|e| e.to_string())?;
        self.public
            .verify_prehash(digest, &sig)
            .map_err(|e| e.to_string())
    }
}

fn load(module: &Path) -> Result<Pkcs11> {
    let ctx = Pkcs11::new(module).map_err(|e| fail(format!("loading {}", module.display()), e))?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(|e| fail("C_Initialize", e))?;
    Ok(ctx)
}

/// The public key of an EC public key object (CKA_EC_POINT, a DER OCTET
/// STRING around the SEC1 point).
fn ec_point(session: &Session, object: ObjectHandle) -> Result<VerifyingKey> {
    let attrs = session
        .get_attributes(object, &[AttributeType::EcPoint])
        .map_err(|e| fail("C_GetAttributeValue(CKA_EC_POINT)", e))?;
    let Some(Attribute::EcPoint(der)) = attrs.into_iter().next() else {
        return Err(Failure("the public key has no CKA_EC_POINT".into()));
    };
    // 04 41 <65-byte point>; accept a bare point too.
    let point = match der.as_slice() {
        [0x04, len, rest @ ..] if usize::from(*len) == rest.len() => rest,
        other => other,
    };
    VerifyingKey::from_sec1_bytes(point).map_err(|e| fail("CKA_EC_POINT", e))
}
