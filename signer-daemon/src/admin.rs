//! Token administration and offline use, without the daemon:
//! `emulated init`, `emulated root`, `keygen`, `pubkey`, `sign`.
//!
//! Exit codes (see README): 0 success; 1 the operation failed (token error:
//! wrong PIN, touch timeout, locked or corrupt state, I/O, ...); 2 usage
//! error (bad or missing arguments).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use sha2::Digest;
use signer_lib::emulator::{EmulatedToken, InitOptions, OpenOptions, TouchMode};
use signer_lib::selector::OpenConfig;
use signer_lib::session::{PinKeeper, PinSource, SigningSession};
use signer_lib::{
    Algorithm, FirmwareVersion, HashAlgorithm, KeyInfo, ManagementKey, ManagementKeyAlgorithm, Pin,
    PinPolicy, SignInput, SignatureScheme, SlotId, Token, TokenEvent, TokenSelector, TouchPolicy,
};
use zeroize::Zeroizing;

/// The environment variable holding the management key in hex.
pub const MGMT_KEY_ENV: &str = "SIGNER_MGMT_KEY";

/// Why a command failed; decides the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad or inconsistent arguments (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// The token refused or failed (exit code 1).
    #[error(transparent)]
    Token(#[from] signer_lib::Error),
    /// Reading input or writing output failed (exit code 1).
    #[error("{path}: {source}")]
    Io {
        /// The file (or `stdin`/`stdout`).
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Anything else (exit code 1).
    #[error("{0}")]
    Other(String),
}

impl CliError {
    /// The process exit code: 2 for usage errors, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => 2,
            _ => 1,
        }
    }

    fn io(path: impl AsRef<Path>, source: std::io::Error) -> CliError {
        CliError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

impl From<&str> for CliError {
    fn from(s: &str) -> Self {
        CliError::Other(s.to_string())
    }
}

impl From<String> for CliError {
    fn from(s: String) -> Self {
        CliError::Other(s)
    }
}

/// Result of a command.
pub type CliResult<T = ()> = Result<T, CliError>;

/// The former placeholder, kept as an alias so modules written against it
/// keep compiling; use [`CliResult`].
pub mod anyhow_like {
    /// Result.
    pub type Result = super::CliResult<()>;
}

fn parse_firmware(s: &str) -> Result<FirmwareVersion, String> {
    let parts: Vec<&str> = s.split('.').collect();
    let [a, b, c] = parts.as_slice() else {
        return Err(format!("firmware version {s:?} is not MAJOR.MINOR.PATCH"));
    };
    let n = |p: &str| {
        p.parse::<u8>()
            .map_err(|_| format!("firmware version {s:?} is not MAJOR.MINOR.PATCH"))
    };
    let version = FirmwareVersion::new(n(a)?, n(b)?, n(c)?);
    // E2: only the firmware generations the emulator models.
    signer_lib::emulator::card::firmware::check_modelled(version).map_err(|e| e.to_string())?;
    Ok(version)
}

/// `signer-daemon emulated ...`
#[derive(Debug, Subcommand)]
pub enum EmulatedCommand {
    /// Create a new emulated token state file (FOR TESTS AND CI ONLY).
    Init(InitArgs),
    /// Print the emulated token's attestation root certificate (PEM).
    Root(RootArgs),
}

/// `signer-daemon emulated init`
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The state file to create (refuses to overwrite). Holds private keys.
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// Serial number (default: random 8 digits).
    #[arg(long)]
    pub serial: Option<u32>,
    /// Management key algorithm (default: aes192 on firmware 5.7+, tdes before).
    #[arg(long, value_name = "ALG")]
    pub mgmt_key_alg: Option<ManagementKeyAlgorithm>,
    /// Firmware version to emulate, and so what the card refuses: 4.3.5 to
    /// 4.3.x (YubiKey 4: no GET METADATA, 3DES management key only, no
    /// Ed25519/X25519/RSA-3072/4096, no MOVE/DELETE KEY), 5.0.0 to 5.2.x (no
    /// GET METADATA), 5.3.0 to 5.6.x (metadata; AES management keys from
    /// 5.4.0), 5.7.x (everything; AES-192 default management key; the 2024
    /// attestation PKI from 5.7.4). Other versions are refused. See README
    /// "Firmware generations".
    #[arg(long, value_name = "X.Y.Z", default_value = "5.7.4", value_parser = parse_firmware)]
    pub firmware: FirmwareVersion,
    /// Make the card with PIN complexity enforced (firmware 5.7+ only): a
    /// new PIN or PUK that is one character repeated or a commonly used
    /// value is refused (6985), and the device info says so. See README
    /// "PIN complexity".
    #[arg(long)]
    pub pin_complexity: bool,
}

/// `signer-daemon emulated root`
#[derive(Debug, Args)]
pub struct RootArgs {
    /// The emulated token's state file.
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
}

/// Management key options.
#[derive(Debug, Args)]
pub struct MgmtKeyArgs {
    /// File holding the management key in hex. Otherwise $SIGNER_MGMT_KEY,
    /// otherwise the factory default key (with a warning).
    #[arg(long, value_name = "FILE")]
    pub mgmt_key_file: Option<PathBuf>,
    /// Management key algorithm (default: what the token uses, if it can
    /// tell; else aes192).
    #[arg(long, value_name = "ALG")]
    pub mgmt_key_alg: Option<ManagementKeyAlgorithm>,
}

/// `signer-daemon keygen`
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Token: emulated:FILE, yubikey or yubikey:SERIAL.
    #[arg(long, value_name = "SELECTOR")]
    pub token: TokenSelector,
    /// Slot: 9a, 9c, 9d, 9e or 82..95.
    #[arg(long)]
    pub slot: SlotId,
    /// Key algorithm: p256, p384, rsa1024, rsa2048, rsa3072, rsa4096,
    /// ed25519 or x25519 (what a token offers depends on its firmware: RSA
    /// 3072/4096, Ed25519 and X25519 need YubiKey 5.7).
    #[arg(long, default_value = "p256")]
    pub alg: Algorithm,
    /// PIN policy: default, never, once, always.
    #[arg(long, default_value = "default")]
    pub pin_policy: PinPolicy,
    /// Touch policy: default, never, always, cached.
    #[arg(long, default_value = "default")]
    pub touch_policy: TouchPolicy,
    /// Where the management key comes from.
    #[command(flatten)]
    pub mgmt: MgmtKeyArgs,
    /// File holding the PIN (YubiKey: for a PIN-protected management key and
    /// to sign the slot's self-signed certificate). Otherwise $SIGNER_PIN,
    /// otherwise a prompt on a terminal.
    #[arg(long, value_name = "FILE")]
    pub pin_file: Option<PathBuf>,
}

/// `signer-daemon pubkey`
#[derive(Debug, Args)]
pub struct PubkeyArgs {
    /// Token: emulated:FILE, yubikey or yubikey:SERIAL.
    #[arg(long, value_name = "SELECTOR")]
    pub token: TokenSelector,
    /// Slot.
    #[arg(long)]
    pub slot: SlotId,
    /// Print only the key id (lowercase hex SHA-256 of the SubjectPublicKeyInfo).
    #[arg(long)]
    pub key_id: bool,
}

/// `signer-daemon sign`
#[derive(Debug, Args)]
pub struct SignArgs {
    /// Token: emulated:FILE, yubikey or yubikey:SERIAL.
    #[arg(long, value_name = "SELECTOR")]
    pub token: TokenSelector,
    /// Slot.
    #[arg(long)]
    pub slot: SlotId,
    /// The message to sign (default: standard input).
    #[arg(long = "in", value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Hash: sha256, sha384, sha512 (default: sha256 for p256 and RSA,
    /// sha384 for p384; Ed25519 takes sha512 only, its own hash).
    #[arg(long)]
    pub hash: Option<HashAlgorithm>,
    /// RSA padding: pkcs1v15 or pss (required for RSA keys, refused for others).
    #[arg(long, value_name = "PADDING", value_parser = parse_padding)]
    pub padding: Option<SignatureScheme>,
    /// Where to write the signature (default: standard output): DER for
    /// ECDSA, the modulus-length integer for RSA, 64 bytes for Ed25519.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// File holding the PIN. Otherwise $SIGNER_PIN, otherwise a prompt on a terminal.
    #[arg(long, value_name = "FILE")]
    pub pin_file: Option<PathBuf>,
}

fn parse_padding(s: &str) -> Result<SignatureScheme, String> {
    match s.parse::<SignatureScheme>() {
        Ok(scheme @ (SignatureScheme::RsaPkcs1v15 | SignatureScheme::RsaPss)) => Ok(scheme),
        _ => Err(format!("padding {s:?}: use pkcs1v15 or pss")),
    }
}

fn open_config() -> CliResult<OpenConfig> {
    Ok(OpenConfig {
        emulated: OpenOptions::with_touch(TouchMode::from_env()?.source()),
    })
}

fn warn_emulated(selector: &TokenSelector) {
    if selector.is_emulated() {
        eprintln!(
            "note: {selector} is an EMULATED token: its keys are in a file; for tests and CI only"
        );
    }
}

/// Run `signer-daemon emulated ...`.
pub fn emulated(cmd: EmulatedCommand) -> CliResult {
    match cmd {
        EmulatedCommand::Init(args) => {
            let token = EmulatedToken::init(
                &args.state,
                &InitOptions {
                    serial: args.serial,
                    firmware: args.firmware,
                    management_key_algorithm: args.mgmt_key_alg,
                    pin_complexity: args.pin_complexity,
                },
            )?;
            let mut token = token;
            let info = token.info()?;
            eprintln!(
                "WARNING: {} holds this token's private keys, PIN and management key in plain form.\n\
                 WARNING: emulated tokens are for tests and CI only; never put a production key in one.",
                args.state.display()
            );
            println!("state: {}", args.state.display());
            println!("serial: {}", info.serial);
            println!("firmware: {}", info.firmware);
            println!(
                "management key: {} (factory default 010203...08)",
                token.management_key_algorithm()
            );
            println!("PIN: 123456 (factory default), PUK: 12345678 (factory default)");
            if args.pin_complexity {
                println!("PIN complexity: enforced");
            }
            Ok(())
        }
        EmulatedCommand::Root(args) => {
            let token = EmulatedToken::open(&args.state, TouchMode::Approve.source())?;
            print!("{}", token.attestation_root_pem()?);
            Ok(())
        }
    }
}

fn read_secret_file(path: &Path) -> CliResult<Zeroizing<String>> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| CliError::io(path, e))?);
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        CliError::Usage(format!(
            "{}: the management key file is not text",
            path.display()
        ))
    })?;
    Ok(Zeroizing::new(text.to_string()))
}

/// The management key from `--mgmt-key-file`, `$SIGNER_MGMT_KEY`, or the
/// factory default (with a loud warning).
fn management_key(
    args: &MgmtKeyArgs,
    hint: Option<ManagementKeyAlgorithm>,
) -> CliResult<ManagementKey> {
    let algorithm = args
        .mgmt_key_alg
        .or(hint)
        .unwrap_or(ManagementKeyAlgorithm::Aes192);
    match explicit_management_key(args, algorithm)? {
        Some(key) => Ok(key),
        None => default_management_key(algorithm),
    }
}

/// The management key from `--mgmt-key-file` or `$SIGNER_MGMT_KEY`, if one
/// is given.
fn explicit_management_key(
    args: &MgmtKeyArgs,
    algorithm: ManagementKeyAlgorithm,
) -> CliResult<Option<ManagementKey>> {
    let key = if let Some(path) = &args.mgmt_key_file {
        let text = read_secret_file(path)?;
        ManagementKey::from_hex(algorithm, text.trim())?
    } else if let Some(value) = std::env::var_os(MGMT_KEY_ENV) {
        let text = Zeroizing::new(
            value
                .into_string()
                .map_err(|_| CliError::Usage(format!("${MGMT_KEY_ENV} is not text")))?,
        );
        ManagementKey::from_hex(algorithm, text.trim())?
    } else {
        return Ok(None);
    };
    if key.is_default() {
        eprintln!(
            "WARNING: the management key given is the publicly known factory default; change it."
        );
    }
    Ok(Some(key))
}

fn default_management_key(algorithm: ManagementKeyAlgorithm) -> CliResult<ManagementKey> {
    eprintln!(
        "WARNING: no management key given (--mgmt-key-file or ${MGMT_KEY_ENV}) and none stored \
         PIN-protected on the token: using the publicly known FACTORY DEFAULT management key. \
         Anyone with the token can replace its keys. Change it before the token holds a key \
         that matters (e.g. `ykman piv access change-management-key --generate --protect`)."
    );
    Ok(ManagementKey::default_for(algorithm)?)
}

/// The management key for a YubiKey, in this order: `--mgmt-key-file`,
/// `$SIGNER_MGMT_KEY` (hex), the key stored PIN-protected on the token the
/// way ykman stores it (needs the PIN: `--pin-file`, `$SIGNER_PIN` or a
/// prompt), or the factory default with a warning. The algorithm comes
/// from `--mgmt-key-alg` or the token's management-key metadata (AES-192 on
/// firmware 5.7+, 3DES before).
fn hardware_management_key(
    args: &MgmtKeyArgs,
    token: &mut signer_lib::piv_client::HardwareToken,
    pins: &mut PinKeeper,
) -> CliResult<ManagementKey> {
    let algorithm = match args.mgmt_key_alg {
        Some(a) => a,
        None => signer_lib::piv_client::management_key_algorithm(token)?,
    };
    if let Some(key) = explicit_management_key(args, algorithm)? {
        return Ok(key);
    }
    if token.management_key_is_pin_protected()? {
        eprintln!(
            "using the management key stored PIN-protected on the token (as ykman stores it)"
        );
        let pin = pins.next_pin(None)?;
        let outcome = token.pin_protected_management_key(&pin);
        match &outcome {
            Ok(_) => pins.record(&pin, &Ok(())),
            Err(signer_lib::Error::WrongPin { retries_left }) => pins.record(
                &pin,
                &Err(signer_lib::Error::WrongPin {
                    retries_left: *retries_left,
                }),
            ),
            Err(signer_lib::Error::PinBlocked) => {
                pins.record(&pin, &Err(signer_lib::Error::PinBlocked))
            }
            Err(_) => {}
        }
        return match outcome? {
            Some(key) => Ok(key),
            None => default_management_key(algorithm),
        };
    }
    default_management_key(algorithm)
}

fn print_key(key: &KeyInfo) -> CliResult {
    let pem = key.public_key.to_pem()?;
    let mut out = std::io::stdout().lock();
    out.write_all(pem.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| CliError::io("stdout", e))
}

fn describe_key(key: &KeyInfo) -> String {
    format!(
        "slot {}: {} key, PIN policy {}, touch policy {}, key id {}",
        key.slot,
        key.algorithm(),
        key.pin_policy,
        key.touch_policy,
        key.key_id
    )
}

/// Run `signer-daemon keygen`.
pub fn keygen(args: KeygenArgs) -> CliResult {
    if args.slot == SlotId::Attestation {
        return Err(CliError::Usage(
            "slot f9 holds the attestation key; keys cannot be generated into it".into(),
        ));
    }
    if !args.alg.is_implemented() {
        return Err(CliError::Usage(format!(
            "algorithm {} is not supported by this build",
            args.alg
        )));
    }
    warn_emulated(&args.token);
    if let TokenSelector::YubiKey { serial } = &args.token {
        return keygen_hardware(&args, *serial);
    }
    let config = open_config()?;
    let (mut token, hint): (Box<dyn Token>, Option<ManagementKeyAlgorithm>) = match &args.token {
        sel @ TokenSelector::Emulated(_) => {
            let t = sel.open_emulated(&config)?;
            let alg = t.management_key_algorithm();
            (Box::new(t), Some(alg))
        }
        sel => (sel.open(&config)?, None),
    };
    let key = management_key(&args.mgmt, hint)?;
    let mut pins = PinKeeper::new(PinSource::from_cli(args.pin_file.clone()));
    // The PIN is needed to self-sign the certificate: ask before generating,
    // so a missing PIN leaves the slot untouched.
    let pin = certificate_pin(&args, &mut pins)?;
    token.authenticate(&key)?;
    let info = token.generate_key(args.slot, args.alg, args.pin_policy, args.touch_policy)?;
    print_key(&info)?;
    eprintln!("generated {}", describe_key(&info));
    eprintln!("key id: {}", info.key_id);
    certificate_after_keygen(token, &info, pin, &key)
}

/// After GENERATE: the self-signed certificate, except for a key that
/// cannot sign (X25519: no certificate, as nothing can sign it on the
/// token). A failure says that the key itself was generated.
fn certificate_after_keygen<T: Token>(
    token: T,
    info: &KeyInfo,
    pin: Option<Pin>,
    management_key: &ManagementKey,
) -> CliResult {
    if !info.algorithm().can_sign() {
        eprintln!(
            "no certificate written to slot {}: an {} key cannot sign one for itself",
            info.slot,
            info.algorithm()
        );
        return Ok(());
    }
    write_self_signed_certificate(token, info, pin, management_key).map_err(|e| {
        CliError::Other(format!(
            "the {} key in slot {} WAS generated (key id {}), but its self-signed certificate could not be written: {e}",
            info.algorithm(),
            info.slot,
            info.key_id
        ))
    })
}

/// The PIN for self-signing the new key's certificate, unless its policy
/// is `never` or the key cannot sign.
fn certificate_pin(args: &KeygenArgs, pins: &mut PinKeeper) -> CliResult<Option<Pin>> {
    if args.pin_policy.resolve(args.slot) == PinPolicy::Never || !args.alg.can_sign() {
        return Ok(None);
    }
    match pins.next_pin(Some(args.slot)) {
        Ok(pin) => Ok(Some(pin)),
        Err(signer_lib::Error::PinRequired { .. }) => Err(CliError::Other(format!(
            "keygen self-signs a certificate for the new key in slot {}, whose PIN policy \
             needs the PIN: give it with --pin-file FILE or $SIGNER_PIN (nothing was generated)",
            args.slot
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Self-sign a certificate for the new key on the token (PIN and touch
/// policies apply) and store it in the slot, as ykman and yubico-piv-tool
/// do, so that tools listing keys by certificate (PKCS#11, ykman) see it.
fn write_self_signed_certificate<T: Token>(
    token: T,
    info: &signer_lib::KeyInfo,
    pin: Option<Pin>,
    management_key: &ManagementKey,
) -> CliResult {
    let mut signer =
        signer_lib::signer::TokenSigner::new(token, info.slot)?.with_events(|event| match event {
            TokenEvent::TouchRequired { slot, timeout } => eprintln!(
                "Touch your YubiKey now to self-sign the certificate (slot {slot}; waiting up to {} s)",
                timeout.as_secs()
            ),
        });
    if let Some(pin) = pin {
        signer = signer.with_pin(pin);
    }
    let subject = format!("signer-daemon {} key {}", info.slot, &info.key_id[..16]);
    let (certificate, mut token) = signer_lib::signer::self_signed_certificate(
        signer,
        &subject,
        std::time::Duration::from_secs(20 * 365 * 24 * 3600),
    )?;
    // Selecting the applet for the PIN clears the management-key
    // authentication on a YubiKey: authenticate again for PUT DATA.
    token.authenticate(management_key)?;
    token.put_certificate(info.slot, &certificate)?;
    eprintln!(
        "wrote a self-signed certificate (CN={subject}) to slot {}",
        info.slot
    );
    Ok(())
}

/// `keygen` on a YubiKey: management key from its sources (see
/// [`hardware_management_key`]), GENERATE, then a self-signed certificate
/// in the slot so other tools (ykman, PKCS#11, OpenSC) see the key.
fn keygen_hardware(args: &KeygenArgs, serial: Option<u32>) -> CliResult {
    let mut token = signer_lib::piv_client::open_yubikey(serial)?;
    let about = token.info()?;
    eprintln!(
        "token: YubiKey serial {}, firmware {}, reader {:?}",
        about.serial,
        about.firmware,
        about.reader.as_deref().unwrap_or("?")
    );
    let mut pins = PinKeeper::new(PinSource::from_cli(args.pin_file.clone()));
    let key = hardware_management_key(&args.mgmt, &mut token, &mut pins)?;
    let pin = certificate_pin(args, &mut pins)?;
    token.authenticate(&key)?;
    let info = token.generate_key(args.slot, args.alg, args.pin_policy, args.touch_policy)?;
    print_key(&info)?;
    eprintln!("generated {}", describe_key(&info));
    eprintln!("key id: {}", info.key_id);
    certificate_after_keygen(token, &info, pin, &key)
}

/// Run `signer-daemon pubkey`.
pub fn pubkey(args: PubkeyArgs) -> CliResult {
    let mut token = args.token.open(&open_config()?)?;
    let key = token.key(args.slot)?;
    if args.key_id {
        println!("{}", key.key_id);
        return Ok(());
    }
    print_key(&key)?;
    eprintln!("{}", describe_key(&key));
    Ok(())
}

/// Hash a stream without holding it in memory.
fn hash_stream(hash: HashAlgorithm, mut input: impl Read, name: &str) -> CliResult<Vec<u8>> {
    fn run<D: Digest>(mut input: impl Read, name: &str) -> CliResult<Vec<u8>> {
        let mut hasher = D::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CliError::io(name, e)),
            };
            hasher.update(&buf[..n]);
        }
        Ok(hasher.finalize().to_vec())
    }
    match hash {
        HashAlgorithm::Sha256 => run::<sha2::Sha256>(&mut input, name),
        HashAlgorithm::Sha384 => run::<sha2::Sha384>(&mut input, name),
        HashAlgorithm::Sha512 => run::<sha2::Sha512>(&mut input, name),
    }
}

/// Read at most `limit` bytes (the Ed25519 message), refusing more.
fn read_bounded(input: impl Read, name: &str, limit: usize) -> CliResult<Vec<u8>> {
    let mut message = Vec::new();
    input
        .take(limit as u64 + 1)
        .read_to_end(&mut message)
        .map_err(|e| CliError::io(name, e))?;
    if message.len() > limit {
        return Err(CliError::Usage(format!(
            "{name} is longer than {limit} bytes: an Ed25519 key signs the message itself, in one command to the token"
        )));
    }
    Ok(message)
}

/// Run `signer-daemon sign`: ECDSA and RSA over the input's digest
/// (streaming), Ed25519 over the input itself. The signature is verified
/// against the slot's public key before it is written.
pub fn sign(args: SignArgs) -> CliResult {
    warn_emulated(&args.token);
    let token = args.token.open(&open_config()?)?;
    let mut session = SigningSession::new(token, PinSource::from_cli(args.pin_file.clone()));
    let key = session.key(args.slot)?;
    let algorithm = key.algorithm();
    let scheme = match (SignatureScheme::implied_by(algorithm), args.padding) {
        (Some(_), Some(p)) => {
            return Err(CliError::Usage(format!(
                "--padding {p} is for RSA keys; the key in slot {} is {algorithm}",
                args.slot
            )));
        }
        (Some(s), None) => s,
        (None, Some(p)) => p,
        (None, None) if algorithm.is_rsa() => {
            return Err(CliError::Usage(format!(
                "the key in slot {} is {algorithm}: give --padding pkcs1v15 or --padding pss",
                args.slot
            )));
        }
        (None, None) => {
            return Err(signer_lib::Error::KeyCannotSign {
                slot: args.slot,
                algorithm,
            }
            .into());
        }
    };
    let (name, input): (String, Box<dyn Read>) = match &args.input {
        Some(path) => (
            path.display().to_string(),
            Box::new(std::fs::File::open(path).map_err(|e| CliError::io(path, e))?),
        ),
        None => ("stdin".into(), Box::new(std::io::stdin().lock())),
    };
    let (hash, data) = if scheme.signs_message() {
        if args.hash.is_some_and(|h| h != HashAlgorithm::Sha512) {
            return Err(CliError::Usage(
                "an Ed25519 key hashes with SHA-512 inside the signature: leave --hash out".into(),
            ));
        }
        (
            HashAlgorithm::Sha512,
            read_bounded(input, &name, signer_lib::model::ED25519_MAX_MESSAGE)?,
        )
    } else {
        let hash = args
            .hash
            .unwrap_or_else(|| HashAlgorithm::preferred_for(algorithm));
        (hash, hash_stream(hash, input, &name)?)
    };
    let sign_input = if scheme.signs_message() {
        SignInput::Message(&data)
    } else {
        SignInput::Digest {
            hash,
            digest: &data,
        }
    };
    let signature = session.sign_with(args.slot, scheme, sign_input, &mut |event| match event {
        TokenEvent::TouchRequired { slot, timeout } => {
            eprintln!(
                "Touch your YubiKey now (key in slot {slot}; waiting up to {} s)",
                timeout.as_secs()
            );
        }
    })?;
    // Released only if it verifies (RustCrypto, signer-lib's PublicKey::verify).
    key.public_key
        .verify(scheme, &sign_input, &signature)
        .map_err(|e| {
            CliError::Other(format!(
                "the token returned a {scheme} signature that does not verify ({e}); it was not written"
            ))
        })?;
    match &args.output {
        Some(path) => write_file(path, &signature)?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&signature)
                .and_then(|()| out.flush())
                .map_err(|e| CliError::io("stdout", e))?;
        }
    }
    if scheme.signs_message() {
        eprintln!(
            "signed with {} ({scheme}, the message itself); key id {}",
            describe_slot(&key),
            key.key_id
        );
    } else {
        eprintln!(
            "signed with {} ({scheme}, {hash}); key id {}",
            describe_slot(&key),
            key.key_id
        );
    }
    Ok(())
}

fn describe_slot(key: &KeyInfo) -> String {
    format!("the {} key in slot {}", key.algorithm(), key.slot)
}

fn write_file(path: &Path, bytes: &[u8]) -> CliResult {
    std::fs::write(path, bytes).map_err(|e| CliError::io(path, e))
}
