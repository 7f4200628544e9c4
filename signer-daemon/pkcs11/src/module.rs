//! The module's state without the C ABI: slots (one per token the daemon
//! serves), sessions, login state, object search and signing. The daemon is
//! behind the [`Daemon`] trait, so all of this is tested with a fake one.
//!
//! Locking: the module keeps its slots and its session table each behind
//! one mutex held only for map operations; every session has its own
//! mutex. No module-wide lock is held while the daemon is asked, so
//! sessions on many threads sign concurrently (`CKF_OS_LOCKING_OK`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use cryptoki_sys::*;
use signer_client::SignEvent;
use signer_client::blocking::BlockingClient;
use signer_proto::v1 as pb;

use crate::error::P11Error;
use crate::mechanism::{Mechanism, SignOperation, Step};
use crate::objects::{self, Attr, KeyEntry, Kind};

/// What the module needs from the daemon.
pub trait Daemon: Send + Sync {
    /// `ListTokens`.
    fn list_tokens(&self) -> Result<Vec<pb::Token>, signer_client::Error>;
    /// `ListKeys` of one token.
    fn list_keys(&self, token_serial: u32) -> Result<Vec<pb::Key>, signer_client::Error>;
    /// `SignWithEvents` with the key's id; r‖s (Ed25519: R‖S; RSA: the
    /// modulus-length signature with `padding`, unspecified for other
    /// keys). `digest` is the message for Ed25519. `on_touch` runs before
    /// the token waits for a touch.
    fn sign(
        &self,
        key: &KeyEntry,
        hash: pb::HashAlgorithm,
        digest: Vec<u8>,
        padding: pb::RsaPadding,
        on_touch: Box<dyn FnMut(SignEvent) + Send>,
    ) -> Result<Vec<u8>, signer_client::Error>;
    /// True in a forked child of the process that made this connection.
    fn is_forked(&self) -> bool {
        false
    }
}

impl Daemon for BlockingClient {
    fn list_tokens(&self) -> Result<Vec<pb::Token>, signer_client::Error> {
        BlockingClient::list_tokens(self)
    }

    fn list_keys(&self, token_serial: u32) -> Result<Vec<pb::Key>, signer_client::Error> {
        BlockingClient::list_keys(self, Some(token_serial))
    }

    fn sign(
        &self,
        key: &KeyEntry,
        hash: pb::HashAlgorithm,
        digest: Vec<u8>,
        padding: pb::RsaPadding,
        on_touch: Box<dyn FnMut(SignEvent) + Send>,
    ) -> Result<Vec<u8>, signer_client::Error> {
        let key_ref = pb::KeyRef {
            key: Some(pb::key_ref::Key::KeyId(key.key_id.clone())),
        };
        // Ed25519: `digest` is the message (CKM_EDDSA), which the token signs.
        let signing = match key.curve {
            crate::objects::Curve::Ed25519 => signer_client::Signing::ed25519(digest),
            crate::objects::Curve::Rsa(_) => {
                signer_client::Signing::rsa(hash, signer_client::Payload::Digest(digest), padding)
            }
            _ => signer_client::Signing::ecdsa(
                hash,
                signer_client::Payload::Digest(digest),
                pb::SignatureFormat::Raw,
            ),
        };
        let r = self.sign_with(key_ref, signing, on_touch)?;
        if r.key_id != key.key_id || r.format != pb::SignatureFormat::Raw as i32 {
            return Err(signer_client::Error::BadAnswer {
                reason: format!(
                    "asked key {} for r||s, got key {} format {}",
                    key.key_id, r.key_id, r.format
                ),
            });
        }
        Ok(r.signature)
    }

    fn is_forked(&self) -> bool {
        BlockingClient::is_forked(self)
    }
}

/// Settings from the environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Print "touch your YubiKey" on stderr before the token waits
    /// (`SIGNER_PKCS11_TOUCH_PROMPT=0` turns it off).
    pub touch_prompt: bool,
    /// Log failures with the daemon's message on stderr
    /// (`SIGNER_PKCS11_LOG=0` turns it off).
    pub log: bool,
}

impl Config {
    /// From `SIGNER_PKCS11_TOUCH_PROMPT` and `SIGNER_PKCS11_LOG` (on unless
    /// `0`, `false`, `no` or `off`).
    pub fn from_env() -> Config {
        let on = |name| {
            std::env::var(name).map_or(true, |v| {
                !matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "0" | "false" | "no" | "off"
                )
            })
        };
        Config {
            touch_prompt: on("SIGNER_PKCS11_TOUCH_PROMPT"),
            log: on("SIGNER_PKCS11_LOG"),
        }
    }
}

/// A log line on stderr, when logging is on.
pub fn log(config: &Config, message: std::fmt::Arguments<'_>) {
    if config.log {
        eprintln!("signer-pkcs11: {message}");
    }
}

struct SlotState {
    serial: u32,
    /// As the daemon last listed it.
    token: pb::Token,
    /// Listed by the daemon and available, at the last look.
    present: bool,
    keys: Vec<KeyEntry>,
    /// Whether `keys` was ever listed.
    listed: bool,
    logged_in: bool,
}

struct SignState {
    key: KeyEntry,
    op: SignOperation,
}

/// A session's operations (its own lock: held while it signs).
struct Session {
    sign: Option<SignState>,
    found: Option<Vec<CK_OBJECT_HANDLE>>,
}

/// A session in the table: what never changes, and its state.
#[derive(Clone)]
struct SessionEntry {
    slot: CK_SLOT_ID,
    flags: CK_FLAGS,
    state: Arc<Mutex<Session>>,
}

/// What `C_GetSlotInfo` says.
#[derive(Debug, PartialEq, Eq)]
pub struct SlotInfo {
    /// `slotDescription`.
    pub description: String,
    /// `flags`.
    pub flags: CK_FLAGS,
    /// `firmwareVersion` (the token's firmware, major.minor).
    pub firmware: (u8, u8),
}

/// What `C_GetTokenInfo` says.
#[derive(Debug, PartialEq, Eq)]
pub struct TokenInfo {
    /// `label`: "YubiKey PIV #SERIAL", as ykcs11 names tokens.
    pub label: String,
    /// `model`.
    pub model: String,
    /// `serialNumber` (decimal).
    pub serial: String,
    /// `flags`.
    pub flags: CK_FLAGS,
    /// `ulSessionCount`.
    pub sessions: CK_ULONG,
    /// `ulRwSessionCount`.
    pub rw_sessions: CK_ULONG,
    /// `firmwareVersion`.
    pub firmware: (u8, u8),
}

/// The manufacturer the module names in every info structure.
pub const MANUFACTURER: &str = "Yubico via signer-daemon";

/// `CKF_*` flags of every token: initialized, with a PIN the daemon holds
/// (so a protected authentication path: `C_Login` needs no PIN).
pub const TOKEN_FLAGS: CK_FLAGS =
    CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED | CKF_PROTECTED_AUTHENTICATION_PATH;

/// The module's state between `C_Initialize` and `C_Finalize`.
pub struct Module {
    daemon: Box<dyn Daemon>,
    /// Settings.
    pub config: Config,
    slots: Mutex<Option<Vec<SlotState>>>,
    sessions: Mutex<HashMap<CK_SESSION_HANDLE, SessionEntry>>,
    next_session: AtomicU64,
    /// The last failure to list the tokens, logged once (a module
    /// registered with p11-kit is asked by every program that walks the
    /// slots; a stopped daemon is one line, not one per call).
    slot_failure: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock was caught at the boundary and reported;
    // the data is still consistent (every update is a single assignment).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn firmware_of(token: &pb::Token) -> (u8, u8) {
    let mut parts = token
        .firmware
        .split('.')
        .map(|p| p.parse::<u8>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

impl Module {
    /// A module talking to `daemon`.
    pub fn new(daemon: Box<dyn Daemon>, config: Config) -> Module {
        Module {
            daemon,
            config,
            slots: Mutex::new(None),
            sessions: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
            slot_failure: Mutex::new(None),
        }
    }

    /// True in a forked child (the module must be initialized again).
    pub fn is_forked(&self) -> bool {
        self.daemon.is_forked()
    }

    fn log(&self, message: std::fmt::Arguments<'_>) {
        log(&self.config, message)
    }

    /// Ask the daemon which tokens it serves; new serials get new slot ids
    /// (a slot id is never reused for another token). When the daemon cannot
    /// be asked, the known slots stay, without tokens, and the reason is
    /// logged: a program listing the slots of every module (p11-kit) is not
    /// failed because this daemon is down.
    fn refresh_slots(&self, slots: &mut Vec<SlotState>) {
        match self.daemon.list_tokens() {
            Ok(tokens) => {
                *lock(&self.slot_failure) = None;
                for s in slots.iter_mut() {
                    s.present = false;
                }
                for t in tokens {
                    match slots.iter_mut().find(|s| s.serial == t.serial) {
                        Some(s) => {
                            s.present = t.available;
                            s.token = t;
                        }
                        None => slots.push(SlotState {
                            serial: t.serial,
                            present: t.available,
                            token: t,
                            keys: Vec::new(),
                            listed: false,
                            logged_in: false,
                        }),
                    }
                }
            }
            Err(e) => {
                let message = e.to_string();
                let mut last = lock(&self.slot_failure);
                if last.as_deref() != Some(message.as_str()) {
                    self.log(format_args!(
                        "listing the daemon's tokens (no slot has a token until this works): {message}"
                    ));
                    *last = Some(message);
                }
                for s in slots.iter_mut() {
                    s.present = false;
                }
            }
        }
    }

    /// `C_GetSlotList`: `refresh` asks the daemon again (the null-buffer
    /// call); the second call of the pair answers from that list.
    pub fn slot_list(&self, token_present: bool, refresh: bool) -> Vec<CK_SLOT_ID> {
        let mut guard = lock(&self.slots);
        if refresh || guard.is_none() {
            let mut slots = guard.take().unwrap_or_default();
            self.refresh_slots(&mut slots);
            *guard = Some(slots);
        }
        guard
            .iter()
            .flatten()
            .enumerate()
            .filter(|(_, s)| s.present || !token_present)
            .map(|(i, _)| i as CK_SLOT_ID)
            .collect()
    }

    fn with_slot<T>(
        &self,
        slot: CK_SLOT_ID,
        f: impl FnOnce(&mut SlotState) -> Result<T, P11Error>,
    ) -> Result<T, P11Error> {
        let mut guard = lock(&self.slots);
        if guard.is_none() {
            let mut slots = Vec::new();
            self.refresh_slots(&mut slots);
            *guard = Some(slots);
        }
        let s = usize::try_from(slot)
            .ok()
            .and_then(|i| guard.as_mut().and_then(|v| v.get_mut(i)))
            .ok_or(P11Error::SlotIdInvalid(slot))?;
        f(s)
    }

    /// `C_GetSlotInfo`.
    pub fn slot_info(&self, slot: CK_SLOT_ID) -> Result<SlotInfo, P11Error> {
        self.with_slot(slot, |s| {
            let hardware = s.token.kind == pb::TokenKind::Hardware as i32;
            let reader = if s.token.reader.is_empty() {
                "emulated token".to_string()
            } else {
                s.token.reader.clone()
            };
            Ok(SlotInfo {
                description: format!("signer-daemon token {} ({reader})", s.serial),
                flags: CKF_REMOVABLE_DEVICE
                    | if s.present { CKF_TOKEN_PRESENT } else { 0 }
                    | if hardware { CKF_HW_SLOT } else { 0 },
                firmware: firmware_of(&s.token),
            })
        })
    }

    fn session_counts(&self, slot: CK_SLOT_ID) -> (CK_ULONG, CK_ULONG) {
        let sessions = lock(&self.sessions);
        let mut all = 0;
        let mut rw = 0;
        for s in sessions.values() {
            if s.slot == slot {
                all += 1;
                if s.flags & CKF_RW_SESSION != 0 {
                    rw += 1;
                }
            }
        }
        (all, rw)
    }

    /// `C_GetTokenInfo`.
    pub fn token_info(&self, slot: CK_SLOT_ID) -> Result<TokenInfo, P11Error> {
        let (sessions, rw_sessions) = self.session_counts(slot);
        self.with_slot(slot, |s| {
            if !s.present {
                return Err(P11Error::TokenNotPresent(slot));
            }
            Ok(TokenInfo {
                label: format!("YubiKey PIV #{}", s.serial),
                model: if s.token.model.is_empty() {
                    "YubiKey".into()
                } else {
                    s.token.model.clone()
                },
                serial: s.serial.to_string(),
                flags: TOKEN_FLAGS,
                sessions,
                rw_sessions,
                firmware: firmware_of(&s.token),
            })
        })
    }

    /// `C_GetMechanismList`.
    pub fn mechanisms(&self, slot: CK_SLOT_ID) -> Result<&'static [CK_MECHANISM_TYPE], P11Error> {
        self.with_slot(slot, |s| {
            if s.present {
                Ok(&crate::mechanism::SUPPORTED[..])
            } else {
                Err(P11Error::TokenNotPresent(slot))
            }
        })
    }

    /// `C_GetMechanismInfo`: (min key bits, max key bits, flags).
    pub fn mechanism_info(
        &self,
        slot: CK_SLOT_ID,
        ckm: CK_MECHANISM_TYPE,
    ) -> Result<(CK_ULONG, CK_ULONG, CK_FLAGS), P11Error> {
        self.mechanisms(slot)?;
        if matches!(
            ckm,
            CKM_RSA_PKCS_PSS
                | CKM_SHA256_RSA_PKCS_PSS
                | CKM_SHA384_RSA_PKCS_PSS
                | CKM_SHA512_RSA_PKCS_PSS
        ) {
            return Ok((1024, 4096, crate::mechanism::RSA_FLAGS));
        }
        Ok(match Mechanism::from_ckm(ckm, 0)? {
            Mechanism::Eddsa => (255, 255, crate::mechanism::EDDSA_FLAGS),
            Mechanism::RsaPkcs
            | Mechanism::RsaPkcsSha256
            | Mechanism::RsaPkcsSha384
            | Mechanism::RsaPkcsSha512 => (1024, 4096, crate::mechanism::RSA_FLAGS),
            _ => (256, 384, crate::mechanism::FLAGS),
        })
    }

    /// Ask the daemon for a slot's keys (on starting a search, and on
    /// opening the first session of a slot; never while signing, so a
    /// program that opens a session per signature still costs one daemon
    /// call per signature). On failure the last list stays and the reason
    /// is logged.
    fn refresh_keys(&self, slot: CK_SLOT_ID) -> Result<(), P11Error> {
        let serial = self.with_slot(slot, |s| Ok(s.serial))?;
        match self.daemon.list_keys(serial) {
            Ok(keys) => {
                let mut entries = Vec::new();
                for k in &keys {
                    match KeyEntry::from_key(k) {
                        Ok(e) => entries.push(e),
                        Err(objects::SkipReason::Slot(_)) => {}
                        Err(why) => self.log(format_args!(
                            "key {} in slot {} of token {serial} has no objects: {why}",
                            k.key_id, k.slot
                        )),
                    }
                }
                self.with_slot(slot, |s| {
                    s.keys = entries;
                    s.listed = true;
                    Ok(())
                })
            }
            Err(e) => {
                self.log(format_args!("listing the keys of token {serial}: {e}"));
                Ok(())
            }
        }
    }

    /// `C_OpenSession`.
    pub fn open_session(
        &self,
        slot: CK_SLOT_ID,
        flags: CK_FLAGS,
    ) -> Result<CK_SESSION_HANDLE, P11Error> {
        if flags & CKF_SERIAL_SESSION == 0 {
            return Err(P11Error::ParallelNotSupported);
        }
        let listed = self.with_slot(slot, |s| {
            if s.present {
                Ok(s.listed)
            } else {
                Err(P11Error::TokenNotPresent(slot))
            }
        })?;
        if !listed {
            self.refresh_keys(slot)?;
        }
        let h = self.next_session.fetch_add(1, Ordering::Relaxed) as CK_SESSION_HANDLE;
        let entry = SessionEntry {
            slot,
            flags: flags & (CKF_SERIAL_SESSION | CKF_RW_SESSION),
            state: Arc::new(Mutex::new(Session {
                sign: None,
                found: None,
            })),
        };
        lock(&self.sessions).insert(h, entry);
        Ok(h)
    }

    fn session(&self, h: CK_SESSION_HANDLE) -> Result<SessionEntry, P11Error> {
        lock(&self.sessions)
            .get(&h)
            .cloned()
            .ok_or(P11Error::SessionHandleInvalid(h))
    }

    /// Forget the login of a slot once its last session is closed.
    fn closed(&self, slot: CK_SLOT_ID) {
        if self.session_counts(slot).0 == 0 {
            let _ = self.with_slot(slot, |s| {
                s.logged_in = false;
                Ok(())
            });
        }
    }

    /// `C_CloseSession`.
    pub fn close_session(&self, h: CK_SESSION_HANDLE) -> Result<(), P11Error> {
        let s = lock(&self.sessions)
            .remove(&h)
            .ok_or(P11Error::SessionHandleInvalid(h))?;
        self.closed(s.slot);
        Ok(())
    }

    /// `C_CloseAllSessions`.
    pub fn close_all_sessions(&self, slot: CK_SLOT_ID) -> Result<(), P11Error> {
        self.with_slot(slot, |_| Ok(()))?;
        lock(&self.sessions).retain(|_, s| s.slot != slot);
        self.closed(slot);
        Ok(())
    }

    /// `C_GetSessionInfo`: (slot, state, flags).
    pub fn session_info(
        &self,
        h: CK_SESSION_HANDLE,
    ) -> Result<(CK_SLOT_ID, CK_STATE, CK_FLAGS), P11Error> {
        let SessionEntry { slot, flags, .. } = self.session(h)?;
        let logged_in = self.with_slot(slot, |s| Ok(s.logged_in))?;
        let rw = flags & CKF_RW_SESSION != 0;
        let state = match (rw, logged_in) {
            (false, false) => CKS_RO_PUBLIC_SESSION,
            (false, true) => CKS_RO_USER_FUNCTIONS,
            (true, false) => CKS_RW_PUBLIC_SESSION,
            (true, true) => CKS_RW_USER_FUNCTIONS,
        };
        Ok((slot, state, flags))
    }

    /// `C_Login`. The daemon authorizes callers by their peer credentials
    /// and holds the card's PIN itself, so the PIN given here (if any) is
    /// neither checked, forwarded nor kept: the call only records the login
    /// state PKCS#11 requires, so tools that always log in work.
    pub fn login(&self, h: CK_SESSION_HANDLE, user: CK_USER_TYPE) -> Result<(), P11Error> {
        let slot = self.session(h)?.slot;
        match user {
            CKU_USER => self.with_slot(slot, |s| {
                if s.logged_in {
                    return Err(P11Error::UserAlreadyLoggedIn);
                }
                s.logged_in = true;
                Ok(())
            }),
            // For keys with CKA_ALWAYS_AUTHENTICATE (none here): accepted.
            CKU_CONTEXT_SPECIFIC => Ok(()),
            _ => Err(P11Error::UserTypeInvalid),
        }
    }

    /// `C_Logout`.
    pub fn logout(&self, h: CK_SESSION_HANDLE) -> Result<(), P11Error> {
        let slot = self.session(h)?.slot;
        self.with_slot(slot, |s| {
            if !s.logged_in {
                return Err(P11Error::UserNotLoggedIn);
            }
            s.logged_in = false;
            Ok(())
        })
    }

    /// `C_FindObjectsInit`: the key list is asked again first.
    pub fn find_init(
        &self,
        h: CK_SESSION_HANDLE,
        template: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)],
    ) -> Result<(), P11Error> {
        let SessionEntry { slot, state, .. } = self.session(h)?;
        if lock(&state).found.is_some() {
            return Err(P11Error::OperationActive);
        }
        self.refresh_keys(slot)?;
        let found = self.with_slot(slot, |s| {
            let mut found = Vec::new();
            for k in &s.keys {
                for kind in k.kinds() {
                    if objects::matches(k, kind, template) {
                        found.push(objects::handle(slot, k.ckaid, kind));
                    }
                }
            }
            Ok(found)
        })?;
        lock(&state).found = Some(found);
        Ok(())
    }

    /// `C_FindObjects`: up to `max` more handles.
    pub fn find(
        &self,
        h: CK_SESSION_HANDLE,
        max: usize,
    ) -> Result<Vec<CK_OBJECT_HANDLE>, P11Error> {
        let state = self.session(h)?.state;
        let mut s = lock(&state);
        let found = s.found.as_mut().ok_or(P11Error::OperationNotInitialized)?;
        let n = max.min(found.len());
        Ok(found.drain(..n).collect())
    }

    /// `C_FindObjectsFinal`.
    pub fn find_final(&self, h: CK_SESSION_HANDLE) -> Result<(), P11Error> {
        let state = self.session(h)?.state;
        let mut s = lock(&state);
        s.found.take().ok_or(P11Error::OperationNotInitialized)?;
        Ok(())
    }

    fn object(
        &self,
        h: CK_SESSION_HANDLE,
        o: CK_OBJECT_HANDLE,
    ) -> Result<(KeyEntry, Kind), P11Error> {
        let slot = self.session(h)?.slot;
        let (oslot, ckaid, kind) =
            objects::parse_handle(o).ok_or(P11Error::ObjectHandleInvalid(o))?;
        if oslot != slot {
            return Err(P11Error::ObjectHandleInvalid(o));
        }
        self.with_slot(slot, |s| {
            s.keys
                .iter()
                .find(|k| k.ckaid == ckaid && k.kinds().contains(&kind))
                .map(|k| (k.clone(), kind))
                .ok_or(P11Error::ObjectHandleInvalid(o))
        })
    }

    /// `C_GetAttributeValue` for one attribute.
    pub fn attributes(
        &self,
        h: CK_SESSION_HANDLE,
        o: CK_OBJECT_HANDLE,
        types: &[CK_ATTRIBUTE_TYPE],
    ) -> Result<Vec<Attr>, P11Error> {
        let (key, kind) = self.object(h, o)?;
        Ok(types.iter().map(|t| key.attribute(kind, *t)).collect())
    }

    /// `C_SignInit` with a parameter of `parameter_len` bytes (none but
    /// the PSS mechanisms take one: [`Module::sign_init_param`]).
    pub fn sign_init(
        &self,
        h: CK_SESSION_HANDLE,
        ckm: CK_MECHANISM_TYPE,
        parameter_len: usize,
        key: CK_OBJECT_HANDLE,
    ) -> Result<(), P11Error> {
        let param = match parameter_len {
            0 => crate::mechanism::Param::None,
            n => crate::mechanism::Param::Other(n),
        };
        self.sign_init_param(h, ckm, &param, key)
    }

    /// `C_SignInit` with the mechanism's parameter.
    pub fn sign_init_param(
        &self,
        h: CK_SESSION_HANDLE,
        ckm: CK_MECHANISM_TYPE,
        param: &crate::mechanism::Param,
        key: CK_OBJECT_HANDLE,
    ) -> Result<(), P11Error> {
        let state = self.session(h)?.state;
        if lock(&state).sign.is_some() {
            return Err(P11Error::OperationActive);
        }
        let mechanism = Mechanism::from_param(ckm, param)?;
        let (entry, kind) = self
            .object(h, key)
            .map_err(|_| P11Error::KeyHandleInvalid(key))?;
        if kind != Kind::PrivateKey {
            return Err(P11Error::KeyHandleInvalid(key));
        }
        if !mechanism.fits(entry.curve) {
            return Err(P11Error::KeyTypeInconsistent {
                mechanism: ckm,
                curve: match entry.curve {
                    crate::objects::Curve::P256 => "P-256",
                    crate::objects::Curve::P384 => "P-384",
                    crate::objects::Curve::Ed25519 => "Ed25519",
                    crate::objects::Curve::Rsa(_) => "RSA",
                },
            });
        }
        let op = SignOperation::new(mechanism, entry.curve);
        lock(&state).sign = Some(SignState { key: entry, op });
        Ok(())
    }

    fn daemon_signer(
        &self,
        key: &KeyEntry,
        padding: pb::RsaPadding,
    ) -> impl FnOnce(pb::HashAlgorithm, Vec<u8>) -> Result<Vec<u8>, P11Error> + '_ {
        let key = key.clone();
        move |hash, digest| {
            let prompt = self.config.touch_prompt;
            let on_touch = Box::new(move |e: SignEvent| {
                let SignEvent::TouchRequired {
                    token_serial,
                    slot,
                    timeout,
                } = e;
                if prompt {
                    eprintln!(
                        "Touch your YubiKey now (token {token_serial}, slot {slot}; waiting {} s)",
                        timeout.as_secs()
                    );
                }
            });
            Ok(self.daemon.sign(&key, hash, digest, padding, on_touch)?)
        }
    }

    /// Run a finishing step of the session's signing operation; the
    /// operation ends unless the step was a length answer.
    fn finish(
        &self,
        h: CK_SESSION_HANDLE,
        step: impl FnOnce(&mut SignOperation, &KeyEntry) -> Result<Step, P11Error>,
    ) -> Result<Step, P11Error> {
        let session = self.session(h)?.state;
        let mut s = lock(&session);
        let state = s.sign.as_mut().ok_or(P11Error::OperationNotInitialized)?;
        let key = state.key.clone();
        let r = step(&mut state.op, &key);
        if !matches!(r, Ok(Step::Length(_)) | Ok(Step::TooSmall(_))) {
            s.sign = None;
        }
        r
    }

    /// `C_Sign`: `capacity` is `None` for a length query.
    pub fn sign(
        &self,
        h: CK_SESSION_HANDLE,
        data: &[u8],
        capacity: Option<usize>,
    ) -> Result<Step, P11Error> {
        self.finish(h, |op, key| {
            let padding = op.mechanism().padding();
            op.sign(data, capacity, self.daemon_signer(key, padding))
        })
    }

    /// `C_SignUpdate`.
    pub fn sign_update(&self, h: CK_SESSION_HANDLE, data: &[u8]) -> Result<(), P11Error> {
        let session = self.session(h)?.state;
        let mut s = lock(&session);
        let state = s.sign.as_mut().ok_or(P11Error::OperationNotInitialized)?;
        let r = state.op.update(data);
        if r.is_err() {
            s.sign = None;
        }
        r
    }

    /// `C_SignFinal`.
    pub fn sign_final(
        &self,
        h: CK_SESSION_HANDLE,
        capacity: Option<usize>,
    ) -> Result<Step, P11Error> {
        self.finish(h, |op, key| {
            let padding = op.mechanism().padding();
            op.sign_final(capacity, self.daemon_signer(key, padding))
        })
    }
}

/// `s` blank-padded (or cut at a character boundary) to `N` bytes, as
/// PKCS#11's fixed-size text fields want.
pub fn padded<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [b' '; N];
    let mut end = s.len().min(N);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out[..end].copy_from_slice(&s.as_bytes()[..end]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    struct Fake {
        tokens: Mutex<Result<Vec<pb::Token>, ()>>,
        keys: Vec<pb::Key>,
        signs: AtomicUsize,
        lists: AtomicUsize,
        paddings: Mutex<Vec<pb::RsaPadding>>,
    }

    fn unreachable() -> signer_client::Error {
        signer_client::Error::Unreachable {
            path: "/x.sock".into(),
            detail: "down".into(),
        }
    }

    impl Daemon for Arc<Fake> {
        fn list_tokens(&self) -> Result<Vec<pb::Token>, signer_client::Error> {
            lock(&self.tokens).clone().map_err(|_| unreachable())
        }
        fn list_keys(&self, serial: u32) -> Result<Vec<pb::Key>, signer_client::Error> {
            self.lists.fetch_add(1, Ordering::SeqCst);
            Ok(self
                .keys
                .iter()
                .filter(|k| k.token_serial == serial)
                .cloned()
                .collect())
        }
        fn sign(
            &self,
            key: &KeyEntry,
            _: pb::HashAlgorithm,
            _: Vec<u8>,
            padding: pb::RsaPadding,
            mut on_touch: Box<dyn FnMut(SignEvent) + Send>,
        ) -> Result<Vec<u8>, signer_client::Error> {
            self.signs.fetch_add(1, Ordering::SeqCst);
            if padding != pb::RsaPadding::Unspecified {
                lock(&self.paddings).push(padding);
            }
            on_touch(SignEvent::TouchRequired {
                token_serial: key.token_serial,
                slot: key.slot.clone(),
                timeout: std::time::Duration::from_secs(15),
            });
            Ok(vec![1; key.curve.signature_len()])
        }
    }

    fn token(serial: u32) -> pb::Token {
        pb::Token {
            serial,
            firmware: "5.7.4".into(),
            model: "YubiKey 5 (emulated)".into(),
            available: true,
            ..Default::default()
        }
    }

    fn key(serial: u32, slot: &str) -> pb::Key {
        use p256::pkcs8::EncodePublicKey;
        let sk = p256::ecdsa::SigningKey::from_slice(&[3u8; 32]).expect("key");
        pb::Key {
            token_serial: serial,
            slot: slot.into(),
            algorithm: pb::Algorithm::EccP256 as i32,
            key_id: format!("{serial}-{slot}"),
            public_key_der: sk
                .verifying_key()
                .to_public_key_der()
                .expect("spki")
                .as_bytes()
                .to_vec(),
            ..Default::default()
        }
    }

    fn module(tokens: Vec<pb::Token>, keys: Vec<pb::Key>) -> (Module, Arc<Fake>) {
        let fake = Arc::new(Fake {
            tokens: Mutex::new(Ok(tokens)),
            keys,
            signs: AtomicUsize::new(0),
            lists: AtomicUsize::new(0),
            paddings: Mutex::new(Vec::new()),
        });
        let config = Config {
            touch_prompt: false,
            log: false,
        };
        (Module::new(Box::new(fake.clone()), config), fake)
    }

    #[test]
    fn one_slot_per_token_with_stable_ids_and_presence_from_the_daemon() {
        let (m, fake) = module(vec![token(7), token(9)], vec![]);
        assert_eq!(m.slot_list(true, true), vec![0, 1]);
        let info = m.token_info(1).unwrap();
        assert_eq!(info.label, "YubiKey PIV #9");
        assert_eq!(info.serial, "9");
        assert_eq!(info.firmware, (5, 7));
        assert_ne!(info.flags & CKF_PROTECTED_AUTHENTICATION_PATH, 0);
        // Token 7 goes away: its slot stays (id 0) without a token.
        *lock(&fake.tokens) = Ok(vec![token(9), token(11)]);
        assert_eq!(m.slot_list(false, true), vec![0, 1, 2]);
        assert_eq!(m.slot_list(true, false), vec![1, 2]);
        assert_eq!(m.token_info(0).unwrap_err().rv(), CKR_TOKEN_NOT_PRESENT);
        assert_eq!(m.slot_info(0).unwrap().flags & CKF_TOKEN_PRESENT, 0);
        assert_eq!(m.token_info(2).unwrap().label, "YubiKey PIV #11");
        // The daemon is down: no tokens, no error for the slot list.
        *lock(&fake.tokens) = Err(());
        assert_eq!(m.slot_list(true, true), Vec::<CK_SLOT_ID>::new());
        assert_eq!(
            m.open_session(1, CKF_SERIAL_SESSION).unwrap_err().rv(),
            CKR_TOKEN_NOT_PRESENT
        );
        assert_eq!(m.slot_info(5).unwrap_err().rv(), CKR_SLOT_ID_INVALID);
    }

    #[test]
    fn find_by_class_id_and_sign_with_a_length_query_costs_one_signature() {
        let (m, fake) = module(
            vec![token(7)],
            vec![key(7, "9c"), key(7, "9a"), key(7, "f9")],
        );
        m.slot_list(true, true);
        let h = m.open_session(0, CKF_SERIAL_SESSION).unwrap();
        m.find_init(h, &[]).unwrap();
        assert_eq!(
            m.find(h, 100).unwrap().len(),
            4,
            "2 keys x (private, public), f9 skipped"
        );
        m.find_final(h).unwrap();
        m.find_init(
            h,
            &[
                (CKA_CLASS, objects::ulong(CKO_PRIVATE_KEY)),
                (CKA_ID, vec![2]),
            ],
        )
        .unwrap();
        let found = m.find(h, 1).unwrap();
        assert_eq!(found.len(), 1);
        assert!(m.find(h, 1).unwrap().is_empty());
        m.find_final(h).unwrap();
        let private = found[0];
        let attrs = m.attributes(h, private, &[CKA_ID, CKA_VALUE]).unwrap();
        assert_eq!(attrs, vec![Attr::Value(vec![2]), Attr::Sensitive]);

        m.sign_init(h, CKM_ECDSA_SHA256, 0, private).unwrap();
        assert_eq!(
            m.sign_init(h, CKM_ECDSA, 0, private).unwrap_err().rv(),
            CKR_OPERATION_ACTIVE
        );
        assert_eq!(m.sign(h, b"m", None).unwrap(), Step::Length(64));
        assert_eq!(m.sign(h, b"m", Some(1)).unwrap(), Step::TooSmall(64));
        assert!(matches!(
            m.sign(h, b"m", Some(64)).unwrap(),
            Step::Signature(_)
        ));
        assert_eq!(fake.signs.load(Ordering::SeqCst), 1);
        // The operation is over.
        assert_eq!(
            m.sign(h, b"m", Some(64)).unwrap_err().rv(),
            CKR_OPERATION_NOT_INITIALIZED
        );
        // A bad digest ends it without asking the daemon.
        m.sign_init(h, CKM_ECDSA, 0, private).unwrap();
        assert_eq!(
            m.sign(h, &[0; 20], Some(64)).unwrap_err().rv(),
            CKR_DATA_LEN_RANGE
        );
        assert_eq!(
            m.sign(h, &[0; 32], Some(64)).unwrap_err().rv(),
            CKR_OPERATION_NOT_INITIALIZED
        );
        assert_eq!(fake.signs.load(Ordering::SeqCst), 1);
        // Public keys do not sign; unknown handles are refused.
        let public = objects::handle(0, 2, Kind::PublicKey);
        assert_eq!(
            m.sign_init(h, CKM_ECDSA, 0, public).unwrap_err().rv(),
            CKR_KEY_HANDLE_INVALID
        );
        let other_slot = objects::handle(1, 2, Kind::PrivateKey);
        assert_eq!(
            m.sign_init(h, CKM_ECDSA, 0, other_slot).unwrap_err().rv(),
            CKR_KEY_HANDLE_INVALID
        );
        assert_eq!(
            m.attributes(h, 12345, &[CKA_ID]).unwrap_err().rv(),
            CKR_OBJECT_HANDLE_INVALID
        );
    }

    /// RSA and X25519 keys the daemon lists have no objects: the ECDSA keys
    /// next to them are found and sign as before, and a handle made up for
    /// one of them is refused. (An "Ed25519" key whose SPKI is not one has
    /// none either.)
    #[test]
    fn keys_of_other_algorithms_have_no_objects_and_do_not_disturb_the_others() {
        let other = |slot: &str, alg: pb::Algorithm| pb::Key {
            algorithm: alg as i32,
            ..key(7, slot)
        };
        let (m, fake) = module(
            vec![token(7)],
            vec![
                key(7, "9c"),
                other("9a", pb::Algorithm::Rsa2048),
                other("9d", pb::Algorithm::Ed25519),
                other("9e", pb::Algorithm::X25519),
                other("82", pb::Algorithm::Rsa4096),
            ],
        );
        m.slot_list(true, true);
        let h = m.open_session(0, CKF_SERIAL_SESSION).unwrap();
        m.find_init(h, &[]).unwrap();
        let found = m.find(h, 100).unwrap();
        m.find_final(h).unwrap();
        assert_eq!(found.len(), 2, "9c's private and public key only");
        // 9a is CKA_ID 1, 9d 3 (a P-256 SPKI listed as Ed25519), 9e 4: no
        // object, no key handle.
        for id in [1u8, 3, 4] {
            m.find_init(h, &[(CKA_ID, vec![id])]).unwrap();
            assert!(m.find(h, 10).unwrap().is_empty(), "CKA_ID {id}");
            m.find_final(h).unwrap();
            let made_up = objects::handle(0, id, Kind::PrivateKey);
            assert_eq!(
                m.sign_init(h, CKM_ECDSA, 0, made_up).unwrap_err().rv(),
                CKR_KEY_HANDLE_INVALID
            );
            assert_eq!(
                m.attributes(h, made_up, &[CKA_ID]).unwrap_err().rv(),
                CKR_OBJECT_HANDLE_INVALID
            );
        }
        let private = objects::handle(0, 2, Kind::PrivateKey);
        m.sign_init(h, CKM_ECDSA, 0, private).unwrap();
        assert!(matches!(
            m.sign(h, &[0; 32], Some(64)).unwrap(),
            Step::Signature(_)
        ));
        assert_eq!(fake.signs.load(Ordering::SeqCst), 1);
    }

    fn ed25519_key(serial: u32, slot: &str) -> pb::Key {
        use ed25519_dalek::pkcs8::EncodePublicKey;
        let sk = ed25519_dalek::SigningKey::from_bytes(&[4u8; 32]);
        pb::Key {
            algorithm: pb::Algorithm::Ed25519 as i32,
            public_key_der: sk
                .verifying_key()
                .to_public_key_der()
                .expect("spki")
                .as_bytes()
                .to_vec(),
            ..key(serial, slot)
        }
    }

    /// An Ed25519 key is a `CKK_EC_EDWARDS` key that signs with
    /// `CKM_EDDSA` only (its 32-byte point, the id-Ed25519 OID), the ECDSA
    /// mechanisms refuse it and `CKM_EDDSA` refuses an ECDSA key
    /// (`CKR_KEY_TYPE_INCONSISTENT`), and a message over the limit is
    /// refused before the daemon is asked.
    #[test]
    fn ed25519_keys_sign_with_ckm_eddsa_only() {
        let (m, fake) = module(vec![token(7)], vec![key(7, "9c"), ed25519_key(7, "9d")]);
        m.slot_list(true, true);
        let h = m.open_session(0, CKF_SERIAL_SESSION).unwrap();
        m.find_init(h, &[(CKA_KEY_TYPE, objects::ulong(CKK_EC_EDWARDS))])
            .unwrap();
        let found = m.find(h, 10).unwrap();
        m.find_final(h).unwrap();
        assert_eq!(found.len(), 2, "9d's private and public key");
        let private = objects::handle(0, 3, Kind::PrivateKey);
        let public = objects::handle(0, 3, Kind::PublicKey);
        assert!(found.contains(&private) && found.contains(&public));
        let attrs = m
            .attributes(h, public, &[CKA_EC_PARAMS, CKA_EC_POINT])
            .unwrap();
        assert_eq!(attrs[0], Attr::Value(vec![0x06, 0x03, 0x2b, 0x65, 0x70]));
        let Attr::Value(point) = &attrs[1] else {
            panic!("no CKA_EC_POINT: {attrs:?}")
        };
        assert_eq!(point[..2], [0x04, 0x20], "DER OCTET STRING of 32 bytes");
        assert_eq!(point.len(), 34);
        let allowed = |handle| match &m.attributes(h, handle, &[CKA_ALLOWED_MECHANISMS]).unwrap()[0]
        {
            Attr::Value(v) => v
                .chunks(std::mem::size_of::<CK_MECHANISM_TYPE>())
                .map(|c| CK_MECHANISM_TYPE::from_ne_bytes(c.try_into().unwrap()))
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(allowed(private), vec![CKM_EDDSA]);
        assert_eq!(
            allowed(objects::handle(0, 2, Kind::PrivateKey)),
            vec![
                CKM_ECDSA,
                CKM_ECDSA_SHA256,
                CKM_ECDSA_SHA384,
                CKM_ECDSA_SHA512
            ]
        );

        for ckm in [CKM_ECDSA, CKM_ECDSA_SHA256] {
            assert_eq!(
                m.sign_init(h, ckm, 0, private).unwrap_err().rv(),
                CKR_KEY_TYPE_INCONSISTENT
            );
        }
        let p256 = objects::handle(0, 2, Kind::PrivateKey);
        assert_eq!(
            m.sign_init(h, CKM_EDDSA, 0, p256).unwrap_err().rv(),
            CKR_KEY_TYPE_INCONSISTENT
        );
        assert_eq!(
            m.sign_init(h, CKM_EDDSA, 8, private).unwrap_err().rv(),
            CKR_MECHANISM_PARAM_INVALID
        );
        m.sign_init(h, CKM_EDDSA, 0, private).unwrap();
        assert_eq!(m.sign(h, b"message", None).unwrap(), Step::Length(64));
        assert!(matches!(
            m.sign(h, b"message", Some(64)).unwrap(),
            Step::Signature(s) if s.len() == 64
        ));
        // Multi-part: the parts are joined into the message.
        m.sign_init(h, CKM_EDDSA, 0, private).unwrap();
        m.sign_update(h, b"mess").unwrap();
        m.sign_update(h, b"age").unwrap();
        assert!(matches!(
            m.sign_final(h, Some(64)).unwrap(),
            Step::Signature(_)
        ));
        assert_eq!(fake.signs.load(Ordering::SeqCst), 2);
        m.sign_init(h, CKM_EDDSA, 0, private).unwrap();
        let long = vec![0u8; crate::mechanism::EDDSA_MAX_MESSAGE + 1];
        assert_eq!(
            m.sign(h, &long, Some(64)).unwrap_err().rv(),
            CKR_DATA_LEN_RANGE
        );
        assert_eq!(fake.signs.load(Ordering::SeqCst), 2);
        assert_eq!(
            m.mechanism_info(0, CKM_EDDSA).unwrap(),
            (255, 255, crate::mechanism::EDDSA_FLAGS)
        );
        assert_eq!(
            crate::mechanism::EDDSA_MAX_MESSAGE,
            signer_lib::model::ED25519_MAX_MESSAGE
        );
    }

    /// An RSA key is a `CKK_RSA` key (modulus, exponent, bits) that signs
    /// with the PKCS#1 v1.5 mechanisms: `CKM_RSA_PKCS` takes a SHA-2
    /// `DigestInfo` only (`CKR_DATA_INVALID` otherwise, before the daemon).
    #[test]
    fn rsa_keys_sign_with_the_pkcs1_mechanisms_only() {
        use rsa::pkcs8::EncodePublicKey;
        use rsa::traits::PublicKeyParts;
        let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
        let sk = rsa::RsaPrivateKey::new(&mut rng, 1024).expect("key");
        let rsa_key = pb::Key {
            algorithm: pb::Algorithm::Rsa1024 as i32,
            public_key_der: sk
                .to_public_key()
                .to_public_key_der()
                .expect("spki")
                .as_bytes()
                .to_vec(),
            ..key(7, "9a")
        };
        let (m, fake) = module(vec![token(7)], vec![key(7, "9c"), rsa_key]);
        m.slot_list(true, true);
        let h = m.open_session(0, CKF_SERIAL_SESSION).unwrap();
        let private = objects::handle(0, 1, Kind::PrivateKey);
        let public = objects::handle(0, 1, Kind::PublicKey);
        let attrs = m
            .attributes(
                h,
                public,
                &[
                    CKA_KEY_TYPE,
                    CKA_MODULUS,
                    CKA_PUBLIC_EXPONENT,
                    CKA_MODULUS_BITS,
                ],
            )
            .unwrap();
        assert_eq!(attrs[0], Attr::Value(objects::ulong(CKK_RSA)));
        assert_eq!(
            attrs[1],
            Attr::Value(sk.n().to_be_bytes_trimmed_vartime().to_vec())
        );
        assert_eq!(attrs[2], Attr::Value(vec![1, 0, 1]));
        assert_eq!(attrs[3], Attr::Value(objects::ulong(1024)));
        assert_eq!(
            m.attributes(h, public, &[CKA_EC_POINT]).unwrap(),
            vec![Attr::Invalid]
        );
        for ckm in [CKM_ECDSA, CKM_EDDSA] {
            assert_eq!(
                m.sign_init(h, ckm, 0, private).unwrap_err().rv(),
                CKR_KEY_TYPE_INCONSISTENT
            );
        }
        assert_eq!(
            m.sign_init(h, CKM_RSA_PKCS, 0, objects::handle(0, 2, Kind::PrivateKey))
                .unwrap_err()
                .rv(),
            CKR_KEY_TYPE_INCONSISTENT
        );
        m.sign_init(h, CKM_SHA256_RSA_PKCS, 0, private).unwrap();
        assert_eq!(m.sign(h, b"data", None).unwrap(), Step::Length(128));
        assert!(
            matches!(m.sign(h, b"data", Some(128)).unwrap(), Step::Signature(s) if s.len() == 128)
        );
        // CKM_RSA_PKCS: a DigestInfo (SHA-256 here) is signed, raw data is refused.
        let mut info = vec![
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ];
        info.extend_from_slice(&[9u8; 32]);
        m.sign_init(h, CKM_RSA_PKCS, 0, private).unwrap();
        assert!(matches!(
            m.sign(h, &info, Some(128)).unwrap(),
            Step::Signature(_)
        ));
        m.sign_init(h, CKM_RSA_PKCS, 0, private).unwrap();
        assert_eq!(
            m.sign(h, &[9u8; 32], Some(128)).unwrap_err().rv(),
            CKR_DATA_INVALID
        );
        assert_eq!(fake.signs.load(Ordering::SeqCst), 2);
        assert_eq!(
            m.mechanism_info(0, CKM_SHA512_RSA_PKCS).unwrap(),
            (1024, 4096, crate::mechanism::RSA_FLAGS)
        );

        // PSS: only with the parameters the daemon signs with.
        use crate::mechanism::{Param, pss_param};
        let sha256 = pss_param(pb::HashAlgorithm::Sha256);
        for bad in [
            Param::None,
            Param::Other(24),
            Param::Pss {
                hash: CKM_SHA256,
                mgf: CKG_MGF1_SHA256,
                salt: 0,
            },
            Param::Pss {
                hash: CKM_SHA256,
                mgf: CKG_MGF1_SHA1,
                salt: 32,
            },
            pss_param(pb::HashAlgorithm::Sha384),
        ] {
            assert_eq!(
                m.sign_init_param(h, CKM_SHA256_RSA_PKCS_PSS, &bad, private)
                    .unwrap_err()
                    .rv(),
                CKR_MECHANISM_PARAM_INVALID,
                "{bad:?}"
            );
        }
        m.sign_init_param(h, CKM_SHA256_RSA_PKCS_PSS, &sha256, private)
            .unwrap();
        assert!(matches!(
            m.sign(h, b"data", Some(128)).unwrap(),
            Step::Signature(_)
        ));
        // CKM_RSA_PKCS_PSS: a digest of the parameter's hash, of its length.
        let sha384 = pss_param(pb::HashAlgorithm::Sha384);
        m.sign_init_param(h, CKM_RSA_PKCS_PSS, &sha384, private)
            .unwrap();
        assert_eq!(
            m.sign(h, &[0u8; 32], Some(128)).unwrap_err().rv(),
            CKR_DATA_LEN_RANGE
        );
        m.sign_init_param(h, CKM_RSA_PKCS_PSS, &sha384, private)
            .unwrap();
        assert!(matches!(
            m.sign(h, &[0u8; 48], Some(128)).unwrap(),
            Step::Signature(_)
        ));
        assert_eq!(fake.signs.load(Ordering::SeqCst), 4);
        assert_eq!(
            *lock(&fake.paddings),
            vec![
                pb::RsaPadding::Pkcs1v15,
                pb::RsaPadding::Pkcs1v15,
                pb::RsaPadding::Pss,
                pb::RsaPadding::Pss
            ]
        );
        assert_eq!(
            m.mechanism_info(0, CKM_RSA_PKCS_PSS).unwrap(),
            (1024, 4096, crate::mechanism::RSA_FLAGS)
        );
    }

    #[test]
    fn login_is_recorded_per_token_and_needs_no_pin() {
        let (m, _) = module(vec![token(7)], vec![]);
        m.slot_list(true, true);
        let a = m.open_session(0, CKF_SERIAL_SESSION).unwrap();
        let b = m
            .open_session(0, CKF_SERIAL_SESSION | CKF_RW_SESSION)
            .unwrap();
        assert_eq!(m.session_info(a).unwrap().1, CKS_RO_PUBLIC_SESSION);
        m.login(a, CKU_USER).unwrap();
        assert_eq!(m.session_info(b).unwrap().1, CKS_RW_USER_FUNCTIONS);
        assert_eq!(
            m.login(b, CKU_USER).unwrap_err().rv(),
            CKR_USER_ALREADY_LOGGED_IN
        );
        assert_eq!(m.login(b, CKU_SO).unwrap_err().rv(), CKR_USER_TYPE_INVALID);
        assert_eq!(m.token_info(0).unwrap().rw_sessions, 1);
        m.close_session(a).unwrap();
        assert_eq!(m.session_info(b).unwrap().1, CKS_RW_USER_FUNCTIONS);
        m.close_session(b).unwrap();
        // The last session closed: logged out.
        let c = m.open_session(0, CKF_SERIAL_SESSION).unwrap();
        assert_eq!(m.session_info(c).unwrap().1, CKS_RO_PUBLIC_SESSION);
        assert_eq!(
            m.open_session(0, 0).unwrap_err().rv(),
            CKR_SESSION_PARALLEL_NOT_SUPPORTED
        );
        assert_eq!(
            m.close_session(a).unwrap_err().rv(),
            CKR_SESSION_HANDLE_INVALID
        );
    }

    #[test]
    fn multi_part_signing_and_keys_listed_on_first_open_and_find_only() {
        let (m, fake) = module(vec![token(7)], vec![key(7, "9c")]);
        m.slot_list(true, true);
        let h = m.open_session(0, CKF_SERIAL_SESSION).unwrap();
        let lists = fake.lists.load(Ordering::SeqCst);
        assert_eq!(lists, 1);
        // Sessions after the first do not ask; a search does.
        let h2 = m.open_session(0, CKF_SERIAL_SESSION).unwrap();
        assert_eq!(fake.lists.load(Ordering::SeqCst), 1);
        m.find_init(h2, &[]).unwrap();
        assert_eq!(fake.lists.load(Ordering::SeqCst), 2);
        let lists = 2;
        let private = objects::handle(0, 2, Kind::PrivateKey);
        for _ in 0..3 {
            m.sign_init(h, CKM_ECDSA_SHA512, 0, private).unwrap();
            m.sign_update(h, b"a").unwrap();
            m.sign_update(h, b"b").unwrap();
            assert_eq!(m.sign_final(h, None).unwrap(), Step::Length(64));
            assert!(matches!(
                m.sign_final(h, Some(64)).unwrap(),
                Step::Signature(_)
            ));
        }
        assert_eq!(fake.signs.load(Ordering::SeqCst), 3);
        assert_eq!(
            fake.lists.load(Ordering::SeqCst),
            lists,
            "signing never lists keys"
        );
    }

    #[test]
    fn text_fields_are_blank_padded_and_cut_at_a_character() {
        assert_eq!(&padded::<4>("ab"), b"ab  ");
        assert_eq!(&padded::<4>("abcdef"), b"abcd");
        assert_eq!(&padded::<4>("abcé"), b"abc ");
    }
}
