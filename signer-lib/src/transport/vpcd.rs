//! Serve a software card to pcscd through vsmartcard's **vpcd** reader driver.
//!
//! # The protocol
//!
//! vpcd (`libifdvpcd.so`, Debian package `vsmartcard-vpcd`) is a pcscd
//! reader driver. Each `reader.conf` entry `DEVICENAME /dev/null:PORT`
//! creates **two** reader slots, "`FRIENDLYNAME` 00 00" and
//! "`FRIENDLYNAME` 00 01", whose drivers *listen* on TCP ports `PORT` and
//! `PORT + 1` on all interfaces. The card side (vsmartcard calls it "vicc";
//! here: this module) *connects*; one card per slot.
//!
//! Every message, both ways, is a frame: a 2-byte big-endian length, then
//! that many bytes of payload. From vpcd to the card:
//!
//! | payload           | meaning                 | card answers               |
//! |-------------------|-------------------------|----------------------------|
//! | 1 byte `00`       | power off               | nothing                    |
//! | 1 byte `01`       | power on                | nothing                    |
//! | 1 byte `02`       | (warm) reset            | nothing                    |
//! | 1 byte `04`       | get ATR                 | a frame with the ATR       |
//! | 2 or more bytes   | command APDU            | a frame with the response  |
//!
//! vpcd sends nothing when it accepts a connection: pcscd polls the slot for
//! card presence every 400 ms and vpcd answers the poll by asking for the
//! ATR. The first ATR request is therefore the moment the card becomes
//! present in pcscd ([`BridgeControl::wait_attached`]). A closed connection
//! (or an empty answer) is a removed card. vpcd has no timeouts: the card
//! must answer every ATR request and APDU, and holds up that reader's
//! presence polling while it computes (e.g. while it waits for a touch).
//!
//! A long computation (an RSA-4096 GENERATE takes seconds) therefore holds
//! up that one reader slot and nothing else, as a real reader is busy while
//! its card computes: vpcd holds a lock around each send-and-receive of a
//! slot, and pcscd locks a slot for the duration of a transmit, so no poll
//! of that slot can even reach the card meanwhile (nor could it be answered
//! out of order: the protocol is strictly one answer per request, in
//! order). Every card has its own bridge thread and connection, and vpcd
//! declares its slots thread-safe (`TAG_IFD_SLOT_THREAD_SAFE`), so the other
//! cards keep being polled and answered; the bridge's
//! [`BridgeControl::abort`] and [`BridgeControl::drop_connection`] cut the
//! connection from the controlling thread even mid-command.
//!
//! # This module
//!
//! - A pure codec: [`encode_frame`], [`FrameReader`] (incremental, for
//!   partial reads), [`decode_request`], [`encode_request`] (the vpcd side,
//!   for tests), and [`answer`], which dispatches one request to a
//!   [`VirtualCard`]. No I/O.
//! - A blocking serving loop, [`serve`]: connects to vpcd, answers requests,
//!   reconnects with exponential backoff when vpcd goes away, and stops
//!   cleanly on [`BridgeControl::stop`] after finishing the APDU in progress.
//! - [`spawn`]: the same loop on its own thread, with a [`BridgeHandle`] that
//!   stops it and gives the card back (tests run several bridges, kill and
//!   restart them).
//!
//! Command and response APDUs may carry PINs and keys: every buffer that
//! holds one is zeroized, and logs show only lengths, INS and status words.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown as NetShutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::piv::apdu::StatusWord;

/// The ATR of a YubiKey 5 (NFC) over USB CCID, "Yubico YubiKey 5 NFC (PKI)"
/// in pcsc-tools' `smartcard_list.txt`. Its historical bytes spell
/// "YubiKey". Tools that identify a YubiKey by its ATR recognise it.
pub const YUBIKEY_5_ATR: [u8; 23] = [
    0x3b, 0xfd, 0x13, 0x00, 0x00, 0x81, 0x31, 0xfe, 0x15, 0x80, 0x73, 0xc0, 0x21, 0xc0, 0x57, 0x59,
    0x75, 0x62, 0x69, 0x4b, 0x65, 0x79, 0x40,
];

/// The port vpcd listens on in Debian's default `/etc/reader.conf.d/vpcd`
/// (slot "Virtual PCD 00 00"; "Virtual PCD 00 01" is this plus one).
pub const DEFAULT_PORT: u16 = 35963;

/// The largest payload a frame can carry (the length field is 16 bits).
/// A response APDU can therefore hold at most 65533 data bytes.
pub const MAX_PAYLOAD: usize = 0xffff;

/// A smart card that lives in software, as the vpcd bridge sees it. The
/// emulated YubiKey's APDU front end implements it.
///
/// The bridge calls these methods from one thread, one at a time, in the
/// order vpcd asks. The card persists whatever must survive (its state
/// file); the bridge never interrupts a call, so a call that started always
/// completes, also when the bridge is asked to stop.
pub trait VirtualCard {
    /// The Answer To Reset, 2 to 33 bytes (ISO 7816-3); normally
    /// [`YUBIKEY_5_ATR`]. Asked for every presence poll (several times a
    /// second): it must be cheap and must not change the card's state.
    fn atr(&self) -> Vec<u8>;

    /// The reader powered the card up. Volatile state (PIN verified,
    /// management key authenticated, selected applet, pending chains)
    /// starts fresh.
    fn power_on(&mut self);

    /// The reader cut power. The bridge also calls this when its connection
    /// to vpcd ends (pcscd stopped, bridge stopped, connection lost): for the
    /// card that is the same as being pulled from the reader. Forget all
    /// volatile state. Must be idempotent.
    fn power_off(&mut self);

    /// Warm reset: forget volatile state, as after power off and on.
    fn reset(&mut self);

    /// Process one command APDU and return the response APDU (data, then
    /// SW1 SW2). `command` is whatever bytes the host sent, possibly
    /// malformed: answer those with a status word (`6700`, `6D00`, ...),
    /// never panic. The response must be 2 to [`MAX_PAYLOAD`] bytes; the
    /// bridge answers `6F00` instead of anything else. Long data goes out in
    /// `61xx` / GET RESPONSE chunks, as on the real device.
    fn transmit(&mut self, command: &[u8]) -> Zeroizing<Vec<u8>>;
}

impl<C: VirtualCard + ?Sized> VirtualCard for Box<C> {
    fn atr(&self) -> Vec<u8> {
        (**self).atr()
    }
    fn power_on(&mut self) {
        (**self).power_on()
    }
    fn power_off(&mut self) {
        (**self).power_off()
    }
    fn reset(&mut self) {
        (**self).reset()
    }
    fn transmit(&mut self, command: &[u8]) -> Zeroizing<Vec<u8>> {
        (**self).transmit(command)
    }
}

/// Check that an ATR is something pcscd accepts (2 to 33 bytes, ISO 7816-3).
pub fn check_atr(atr: &[u8]) -> Result<()> {
    if (2..=33).contains(&atr.len()) {
        Ok(())
    } else {
        Err(Error::InvalidAtr {
            reason: format!("{} bytes, an ATR has 2 to 33", atr.len()),
        })
    }
}

// ----- Codec -----------------------------------------------------------------

/// A vpcd control message (a one-byte payload).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Control {
    /// `00`: power off.
    PowerOff,
    /// `01`: power on.
    PowerOn,
    /// `02`: warm reset.
    Reset,
    /// `04`: send the ATR.
    GetAtr,
}

impl Control {
    /// The wire byte.
    pub fn byte(self) -> u8 {
        match self {
            Control::PowerOff => 0,
            Control::PowerOn => 1,
            Control::Reset => 2,
            Control::GetAtr => 4,
        }
    }

    /// From the wire byte.
    pub fn from_byte(b: u8) -> Option<Control> {
        match b {
            0 => Some(Control::PowerOff),
            1 => Some(Control::PowerOn),
            2 => Some(Control::Reset),
            4 => Some(Control::GetAtr),
            _ => None,
        }
    }
}

/// One message from vpcd to the card.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// A control message.
    Control(Control),
    /// A command APDU (two bytes or more; whether it is well-formed is the
    /// card's business).
    Apdu(&'a [u8]),
}

impl fmt::Debug for Request<'_> {
    /// Never prints APDU bytes (they may hold a PIN).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Control(c) => write!(f, "Control({c:?})"),
            Request::Apdu(a) => write!(f, "Apdu({} bytes)", a.len()),
        }
    }
}

/// A vpcd frame that cannot be understood or built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VpcdError {
    /// A frame with no payload. vpcd never sends one; the peer is not vpcd
    /// or is confused. Ignored by the serving loop.
    #[error("empty vpcd frame")]
    EmptyFrame,
    /// A one-byte payload that is not a known control message. Ignored by
    /// the serving loop (vpcd expects no answer to a control message).
    #[error("unknown vpcd control message 0x{0:02x}")]
    UnknownControl(u8),
    /// A payload too long for the 16-bit length field.
    #[error("payload of {0} bytes does not fit a vpcd frame (at most 65535)")]
    TooLong(usize),
}

/// Interpret one frame's payload (vpcd to card).
pub fn decode_request(payload: &[u8]) -> std::result::Result<Request<'_>, VpcdError> {
    match payload {
        [] => Err(VpcdError::EmptyFrame),
        [b] => Control::from_byte(*b)
            .map(Request::Control)
            .ok_or(VpcdError::UnknownControl(*b)),
        apdu => Ok(Request::Apdu(apdu)),
    }
}

/// Frame a request as vpcd sends it (the reader's side; for tests and tools
/// that play vpcd).
pub fn encode_request(request: Request<'_>) -> std::result::Result<Zeroizing<Vec<u8>>, VpcdError> {
    match request {
        Request::Control(c) => encode_frame(&[c.byte()]),
        Request::Apdu(apdu) => encode_frame(apdu),
    }
}

/// Frame a payload: 2-byte big-endian length, then the payload.
pub fn encode_frame(payload: &[u8]) -> std::result::Result<Zeroizing<Vec<u8>>, VpcdError> {
    let len = u16::try_from(payload.len()).map_err(|_| VpcdError::TooLong(payload.len()))?;
    let mut out = Zeroizing::new(Vec::with_capacity(payload.len() + 2));
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Reassembles frames from a byte stream that arrives in pieces. The buffer
/// is zeroized on drop.
#[derive(Default)]
pub struct FrameReader {
    buf: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for FrameReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FrameReader({} bytes buffered)", self.buf.len())
    }
}

impl FrameReader {
    /// An empty reader.
    pub fn new() -> FrameReader {
        FrameReader::default()
    }

    /// Append bytes received from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame's payload, if one has fully arrived.
    pub fn next_frame(&mut self) -> Option<Zeroizing<Vec<u8>>> {
        let [hi, lo, ..] = self.buf[..] else {
            return None;
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if self.buf.len() < 2 + len {
            return None;
        }
        let payload = Zeroizing::new(self.buf[2..2 + len].to_vec());
        self.buf.drain(..2 + len);
        Some(payload)
    }

    /// Whether part of a frame has arrived but not all of it.
    pub fn is_mid_frame(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Bytes buffered (a partial frame, or frames not yet taken).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// The response sent when a card's own response cannot be sent (shorter
/// than a status word, or too long for a frame): `6F00`.
fn no_precise_diagnosis() -> Zeroizing<Vec<u8>> {
    Zeroizing::new(StatusWord::NoPreciseDiagnosis.to_bytes().to_vec())
}

/// Answer one request: call the card and return the payload to send back,
/// or `None` when vpcd expects no answer (power off/on, reset).
///
/// A response APDU that is shorter than two bytes or longer than
/// [`MAX_PAYLOAD`] is replaced by `6F00` (and logged), so that vpcd always
/// gets a well-formed answer.
pub fn answer(card: &mut dyn VirtualCard, request: Request<'_>) -> Option<Zeroizing<Vec<u8>>> {
    match request {
        Request::Control(Control::GetAtr) => Some(Zeroizing::new(card.atr())),
        Request::Control(Control::PowerOn) => {
            card.power_on();
            None
        }
        Request::Control(Control::PowerOff) => {
            card.power_off();
            None
        }
        Request::Control(Control::Reset) => {
            card.reset();
            None
        }
        Request::Apdu(command) => {
            let response = card.transmit(command);
            if (2..=MAX_PAYLOAD).contains(&response.len()) {
                Some(response)
            } else {
                tracing::error!(
                    len = response.len(),
                    "the virtual card returned a response that is not 2 to 65535 bytes; answering 6F00"
                );
                Some(no_precise_diagnosis())
            }
        }
    }
}

// ----- Configuration -----------------------------------------------------------

/// How the bridge connects and how patient it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeConfig {
    /// vpcd's `HOST:PORT` (e.g. `127.0.0.1:35963`; `[::1]:35963` for IPv6).
    pub address: String,
    /// Give up one connection attempt after this long.
    pub connect_timeout: Duration,
    /// First wait after a failed attempt or a lost connection; doubles up to
    /// `backoff_max` while vpcd stays unreachable.
    pub backoff_initial: Duration,
    /// Longest wait between connection attempts.
    pub backoff_max: Duration,
    /// How often a waiting bridge checks for a stop request (the latency of
    /// [`BridgeControl::stop`] when idle).
    pub poll_interval: Duration,
    /// Give up on vpcd (and reconnect) when sending a response blocks this long.
    pub write_timeout: Duration,
    /// On stop, how long to wait for the rest of a command whose first bytes
    /// have arrived, so it is answered rather than cut off.
    pub shutdown_grace: Duration,
}

impl BridgeConfig {
    /// Defaults for `address`: connect timeout 2 s, backoff 50 ms to 2 s,
    /// poll every 50 ms, write timeout 10 s, shutdown grace 2 s.
    pub fn new(address: impl Into<String>) -> BridgeConfig {
        BridgeConfig {
            address: address.into(),
            connect_timeout: Duration::from_secs(2),
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            poll_interval: Duration::from_millis(50),
            write_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(2),
        }
    }

    /// Check the address's shape (`HOST:PORT`, port 1-65535) and the
    /// durations. Name resolution happens at each connection attempt.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: &str| Error::VpcdAddress {
            address: self.address.clone(),
            reason: reason.into(),
        };
        let (host, port) = self
            .address
            .rsplit_once(':')
            .ok_or_else(|| bad("no port"))?;
        if host.is_empty() {
            return Err(bad("no host"));
        }
        match port.parse::<u16>() {
            Ok(0) | Err(_) => return Err(bad("the port must be a number from 1 to 65535")),
            Ok(_) => {}
        }
        if self.poll_interval.is_zero() || self.connect_timeout.is_zero() {
            return Err(bad("poll interval and connect timeout must not be zero"));
        }
        Ok(())
    }
}

// ----- Control and status ------------------------------------------------------

/// Stops a running bridge and reports on it. Cheap to clone; all clones
/// control the same bridge. One control serves one run of [`serve`]: once
/// stopped, it stays stopped (use a new control to serve again).
#[derive(Clone, Default)]
pub struct BridgeControl {
    inner: Arc<ControlInner>,
}

#[derive(Default)]
struct ControlInner {
    stop: AtomicBool,
    abort: AtomicBool,
    apdus: AtomicU64,
    /// The live connection, so that another thread can cut it.
    stream: Mutex<Option<TcpStream>>,
    attachment: Mutex<Attachment>,
    changed: Condvar,
}

#[derive(Default, Clone, Copy)]
struct Attachment {
    /// vpcd has talked to us on the current connection.
    attached: bool,
    /// How many connections vpcd has talked on (so far).
    count: u64,
    /// The serving loop has returned.
    finished: bool,
}

impl fmt::Debug for BridgeControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.attachment();
        f.debug_struct("BridgeControl")
            .field("attached", &a.attached)
            .field("attachments", &a.count)
            .field("apdus", &self.apdus())
            .field("stop", &self.inner.stop.load(Ordering::SeqCst))
            .finish()
    }
}

/// Lock, ignoring poisoning (the protected data stays consistent: plain
/// values written in one statement).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl BridgeControl {
    /// A control for a bridge not started yet.
    pub fn new() -> BridgeControl {
        BridgeControl::default()
    }

    /// Ask the bridge to stop: it finishes the APDU in progress (and waits up
    /// to the shutdown grace for the rest of a command that has started to
    /// arrive), closes the connection (the card disappears from pcscd), and
    /// [`serve`] returns. Safe to call from a signal-handling thread.
    pub fn stop(&self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.notify();
    }

    /// Whether [`BridgeControl::stop`] or [`BridgeControl::abort`] was called.
    pub fn is_stopping(&self) -> bool {
        self.inner.stop.load(Ordering::SeqCst) || self.is_aborted()
    }

    /// Simulate a crash (fault injection): cut the connection at once, even
    /// in the middle of an APDU, whose response is then lost; [`serve`]
    /// returns without reconnecting. A card call already running still
    /// completes (its effect on the card stands, as on a real card pulled
    /// out after it signed).
    pub fn abort(&self) {
        self.inner.abort.store(true, Ordering::SeqCst);
        self.drop_connection();
    }

    fn is_aborted(&self) -> bool {
        self.inner.abort.load(Ordering::SeqCst)
    }

    /// Cut the current connection (fault injection: the card is pulled out);
    /// the bridge reconnects after its backoff, and the card reappears.
    pub fn drop_connection(&self) {
        if let Some(stream) = lock(&self.inner.stream).as_ref() {
            // Errors mean the connection is already gone.
            let _ = stream.shutdown(NetShutdown::Both);
        }
    }

    /// Whether vpcd is talking to the bridge right now (the card is present
    /// in pcscd).
    pub fn is_attached(&self) -> bool {
        self.attachment().attached
    }

    /// How many connections vpcd has talked on so far (1 after the first
    /// attachment, 2 after a reconnection, ...).
    pub fn attachments(&self) -> u64 {
        self.attachment().count
    }

    /// How many command APDUs the bridge has answered.
    pub fn apdus(&self) -> u64 {
        self.inner.apdus.load(Ordering::SeqCst)
    }

    /// Wait until vpcd talks to the bridge at least `count` times in total
    /// (counting reconnections) and is attached now. `false` on timeout or
    /// when the loop ended.
    pub fn wait_attached(&self, count: u64, timeout: Duration) -> bool {
        self.wait(timeout, |a| a.attached && a.count >= count)
    }

    /// Wait until the bridge is detached (connection lost or loop ended).
    pub fn wait_detached(&self, timeout: Duration) -> bool {
        self.wait(timeout, |a| !a.attached)
    }

    fn wait(&self, timeout: Duration, done: impl Fn(&Attachment) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut a = lock(&self.inner.attachment);
        loop {
            if done(&a) {
                return true;
            }
            if a.finished {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            a = self
                .inner
                .changed
                .wait_timeout(a, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn attachment(&self) -> Attachment {
        *lock(&self.inner.attachment)
    }

    fn update(&self, f: impl FnOnce(&mut Attachment)) {
        f(&mut lock(&self.inner.attachment));
        self.notify();
    }

    fn notify(&self) {
        self.inner.changed.notify_all();
    }
}

// ----- Serving loop --------------------------------------------------------------

/// Why [`serve`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServeEnd {
    /// [`BridgeControl::stop`]: the APDU in progress was answered.
    Stopped,
    /// [`BridgeControl::abort`]: the connection was cut.
    Aborted,
}

/// What a bridge did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BridgeStats {
    /// Why it ended.
    pub end: ServeEnd,
    /// Connections vpcd talked on.
    pub attachments: u64,
    /// Command APDUs answered.
    pub apdus: u64,
}

/// How long a new connection may stay unpolled before the bridge warns.
const SILENCE_WARNING: Duration = Duration::from_secs(10);

/// How one connection ended.
enum SessionEnd {
    Stopped,
    Aborted,
    /// The connection ended; `attached`: vpcd had talked on it.
    Lost {
        reason: String,
        attached: bool,
    },
}

/// Serve `card` to vpcd at `config.address` until `control` stops it.
///
/// Connects (retrying with exponential backoff while vpcd is unreachable),
/// answers vpcd's requests, reconnects when the connection ends, and calls
/// [`VirtualCard::power_off`] whenever a connection ends. Returns only on
/// [`BridgeControl::stop`] / [`BridgeControl::abort`], or at once with
/// [`Error::VpcdAddress`] / [`Error::InvalidAtr`] for a configuration that
/// can never work.
pub fn serve(
    card: &mut dyn VirtualCard,
    config: &BridgeConfig,
    control: &BridgeControl,
) -> Result<BridgeStats> {
    let result = serve_inner(card, config, control);
    control.update(|a| {
        a.attached = false;
        a.finished = true;
    });
    result
}

fn serve_inner(
    card: &mut dyn VirtualCard,
    config: &BridgeConfig,
    control: &BridgeControl,
) -> Result<BridgeStats> {
    config.validate()?;
    check_atr(&card.atr())?;
    let mut backoff = config.backoff_initial;
    let mut unreachable_reported = false;
    let end = loop {
        if control.is_aborted() {
            break ServeEnd::Aborted;
        }
        if control.is_stopping() {
            break ServeEnd::Stopped;
        }
        match connect(config) {
            Ok(stream) => {
                tracing::debug!(address = %config.address, "TCP connection to vpcd open; waiting for its first poll");
                unreachable_reported = false;
                let end = session(card, stream, config, control);
                card.power_off();
                match end {
                    SessionEnd::Stopped => break ServeEnd::Stopped,
                    SessionEnd::Aborted => break ServeEnd::Aborted,
                    SessionEnd::Lost { reason, attached } => {
                        if attached {
                            // A working connection ended: retry soon.
                            backoff = config.backoff_initial;
                            tracing::info!(address = %config.address, %reason, "vpcd connection ended; the card is removed until the bridge reconnects");
                        } else {
                            // Accepted and dropped without a word (not vpcd?):
                            // keep backing off rather than spin.
                            tracing::debug!(address = %config.address, %reason, "connection closed before vpcd talked");
                        }
                    }
                }
            }
            Err(e) => {
                if !unreachable_reported {
                    tracing::warn!(address = %config.address, error = %e, "vpcd is not reachable (is pcscd running with a vpcd reader on this port?); retrying");
                    unreachable_reported = true;
                } else {
                    tracing::debug!(address = %config.address, error = %e, "vpcd still not reachable");
                }
            }
        }
        sleep_unless_stopped(backoff, config.poll_interval, control);
        backoff = (backoff * 2).min(config.backoff_max);
    };
    Ok(BridgeStats {
        end,
        attachments: control.attachments(),
        apdus: control.apdus(),
    })
}

fn sleep_unless_stopped(total: Duration, slice: Duration, control: &BridgeControl) {
    let deadline = Instant::now() + total;
    loop {
        if control.is_stopping() {
            return;
        }
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        thread::sleep(slice.min(deadline - now));
    }
}

fn connect(config: &BridgeConfig) -> io::Result<TcpStream> {
    let addrs: Vec<SocketAddr> = config.address.to_socket_addrs()?.collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name resolved to no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, config.connect_timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Serve one connection until it ends.
fn session(
    card: &mut dyn VirtualCard,
    stream: TcpStream,
    config: &BridgeConfig,
    control: &BridgeControl,
) -> SessionEnd {
    let end = session_inner(card, &stream, config, control);
    *lock(&control.inner.stream) = None;
    let _ = stream.shutdown(NetShutdown::Both);
    control.update(|a| a.attached = false);
    end
}

fn session_inner(
    card: &mut dyn VirtualCard,
    mut stream: &TcpStream,
    config: &BridgeConfig,
    control: &BridgeControl,
) -> SessionEnd {
    let setup = stream
        .set_nodelay(true)
        .and_then(|()| stream.set_read_timeout(Some(config.poll_interval)))
        .and_then(|()| stream.set_write_timeout(Some(config.write_timeout)))
        .and_then(|()| stream.try_clone());
    match setup {
        Ok(clone) => *lock(&control.inner.stream) = Some(clone),
        Err(e) => {
            return SessionEnd::Lost {
                reason: format!("socket setup failed: {e}"),
                attached: false,
            };
        }
    }
    // An abort that raced with the connection setup.
    if control.is_aborted() {
        return SessionEnd::Aborted;
    }
    let mut reader = FrameReader::new();
    let mut buf = Zeroizing::new(vec![0u8; 16 * 1024]);
    let mut grace_deadline: Option<Instant> = None;
    let mut attached = false;
    let connected_at = Instant::now();
    let mut silence_reported = false;
    let lost = |reason: String, attached: bool| SessionEnd::Lost { reason, attached };
    loop {
        while let Some(frame) = reader.next_frame() {
            if control.is_aborted() {
                return SessionEnd::Aborted;
            }
            if !attached {
                attached = true;
                control.update(|a| {
                    a.attached = true;
                    a.count += 1;
                });
                tracing::info!(address = %config.address, "vpcd polled: the card is present in pcscd");
            }
            let request = match decode_request(&frame) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring a malformed message from vpcd");
                    continue;
                }
            };
            let reply = answer(card, request);
            if let Request::Apdu(command) = request {
                control.inner.apdus.fetch_add(1, Ordering::SeqCst);
                log_apdu(command, reply.as_ref().map(|r| r.as_slice()));
            } else {
                tracing::trace!(?request, "vpcd control message");
            }
            let Some(reply) = reply else { continue };
            if control.is_aborted() {
                // A crash loses the answer.
                return SessionEnd::Aborted;
            }
            let framed = match encode_frame(&reply) {
                Ok(f) => f,
                // `answer` never returns more than MAX_PAYLOAD bytes.
                Err(e) => return lost(format!("internal error: {e}"), attached),
            };
            if let Err(e) = stream.write_all(&framed) {
                return if control.is_aborted() {
                    SessionEnd::Aborted
                } else {
                    lost(format!("sending to vpcd failed: {e}"), attached)
                };
            }
        }
        if control.is_aborted() {
            return SessionEnd::Aborted;
        }
        if control.is_stopping() {
            if !reader.is_mid_frame() {
                return SessionEnd::Stopped;
            }
            let deadline =
                *grace_deadline.get_or_insert_with(|| Instant::now() + config.shutdown_grace);
            if Instant::now() >= deadline {
                tracing::warn!(
                    buffered = reader.buffered(),
                    "stopping with an incomplete command from vpcd; it was not executed"
                );
                return SessionEnd::Stopped;
            }
        }
        match stream.read(&mut buf) {
            Ok(0) => {
                return if control.is_aborted() {
                    SessionEnd::Aborted
                } else {
                    lost("vpcd closed the connection".into(), attached)
                };
            }
            Ok(n) => {
                // vpcd sends a frame's length and its body in two writes
                // with Nagle on: without an immediate ACK (Linux re-arms
                // delayed ACK after each read) every APDU waited ~40 ms.
                let _ = rustix::net::sockopt::set_tcp_quickack(stream, true);
                reader.push(&buf[..n])
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                // pcscd polls every reader several times a second; a long
                // silence before the first poll means vpcd has not accepted
                // us: most likely another card holds this reader slot.
                if !attached && !silence_reported && connected_at.elapsed() > SILENCE_WARNING {
                    silence_reported = true;
                    tracing::warn!(
                        address = %config.address,
                        "connected, but vpcd has not polled the card for {SILENCE_WARNING:?}: \
                         is another card attached to this reader? Waiting."
                    );
                }
            }
            Err(e) => {
                return if control.is_aborted() {
                    SessionEnd::Aborted
                } else {
                    lost(format!("receiving from vpcd failed: {e}"), attached)
                };
            }
        }
    }
}

/// Log an APDU exchange without its data: INS, lengths, status word.
fn log_apdu(command: &[u8], response: Option<&[u8]>) {
    let ins = command.get(1).copied().unwrap_or(0);
    let sw = response
        .filter(|r| r.len() >= 2)
        .map(|r| StatusWord::from_bytes(r[r.len() - 2], r[r.len() - 1]));
    tracing::debug!(
        ins = format_args!("{ins:02X}"),
        command_len = command.len(),
        response_len = response.map_or(0, <[u8]>::len),
        sw = %sw.map_or_else(|| "-".to_string(), |s| s.to_string()),
        "APDU"
    );
}

// ----- Running a bridge on its own thread ------------------------------------------

/// A card served on its own thread by [`spawn`].
pub type SendCard = Box<dyn VirtualCard + Send>;

/// A bridge running on its own thread. Dropping the handle stops the bridge
/// (gracefully) and drops the card.
pub struct BridgeHandle {
    control: BridgeControl,
    address: String,
    thread: Option<JoinHandle<(SendCard, Result<BridgeStats>)>>,
}

impl fmt::Debug for BridgeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BridgeHandle")
            .field("address", &self.address)
            .field("control", &self.control)
            .finish()
    }
}

/// Serve `card` on a new thread (see [`serve`]). The configuration and the
/// card's ATR are checked before the thread starts, so a bad address fails
/// here, not later.
pub fn spawn(card: SendCard, config: BridgeConfig) -> Result<BridgeHandle> {
    config.validate()?;
    check_atr(&card.atr())?;
    let control = BridgeControl::new();
    let thread_control = control.clone();
    let address = config.address.clone();
    let thread = thread::Builder::new()
        .name(format!("vpcd-bridge {address}"))
        .spawn(move || {
            let mut card = card;
            let result = serve(&mut card, &config, &thread_control);
            (card, result)
        })
        .map_err(|e| Error::Unavailable {
            reason: format!("cannot start the vpcd bridge thread: {e}"),
        })?;
    Ok(BridgeHandle {
        control,
        address,
        thread: Some(thread),
    })
}

impl BridgeHandle {
    /// The bridge's control (status, fault injection).
    pub fn control(&self) -> &BridgeControl {
        &self.control
    }

    /// The vpcd address it serves.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Stop gracefully (finish the APDU in progress), wait for the thread,
    /// and give the card back, e.g. to serve it again later.
    ///
    /// Panics if the card panicked on the bridge thread (the panic is
    /// resumed here).
    pub fn stop(mut self) -> Result<(SendCard, BridgeStats)> {
        self.control.stop();
        self.join()
    }

    /// Simulate a crash: cut the connection now, even mid-APDU (see
    /// [`BridgeControl::abort`]), wait for the thread, give the card back.
    pub fn abort(mut self) -> Result<(SendCard, BridgeStats)> {
        self.control.abort();
        self.join()
    }

    fn join(&mut self) -> Result<(SendCard, BridgeStats)> {
        let Some(thread) = self.thread.take() else {
            return Err(Error::Unavailable {
                reason: "the vpcd bridge was already stopped".into(),
            });
        };
        match thread.join() {
            Ok((card, result)) => result.map(|stats| (card, stats)),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for BridgeHandle {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.control.stop();
            // A panic on the bridge thread is not re-raised from a destructor.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::sync::mpsc;

    use super::*;

    /// What the test card saw.
    #[derive(Default, Debug, Clone, PartialEq, Eq)]
    struct Seen {
        power_on: u32,
        power_off: u32,
        reset: u32,
        commands: Vec<Vec<u8>>,
    }

    /// A card that echoes the command back with 9000, records calls, and can
    /// be made to block inside `transmit` until released.
    struct EchoCard {
        seen: Arc<Mutex<Seen>>,
        gate: Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>,
        response_override: Option<Vec<u8>>,
    }

    impl EchoCard {
        fn new() -> (EchoCard, Arc<Mutex<Seen>>) {
            let seen = Arc::new(Mutex::new(Seen::default()));
            (
                EchoCard {
                    seen: seen.clone(),
                    gate: None,
                    response_override: None,
                },
                seen,
            )
        }
    }

    impl VirtualCard for EchoCard {
        fn atr(&self) -> Vec<u8> {
            YUBIKEY_5_ATR.to_vec()
        }
        fn power_on(&mut self) {
            self.seen.lock().unwrap().power_on += 1;
        }
        fn power_off(&mut self) {
            self.seen.lock().unwrap().power_off += 1;
        }
        fn reset(&mut self) {
            self.seen.lock().unwrap().reset += 1;
        }
        fn transmit(&mut self, command: &[u8]) -> Zeroizing<Vec<u8>> {
            self.seen.lock().unwrap().commands.push(command.to_vec());
            if let Some((entered, release)) = &self.gate {
                entered.send(()).unwrap();
                release.recv().unwrap();
            }
            if let Some(r) = &self.response_override {
                return Zeroizing::new(r.clone());
            }
            let mut r = command.to_vec();
            r.extend_from_slice(&[0x90, 0x00]);
            Zeroizing::new(r)
        }
    }

    /// A stand-in for vpcd: listens, accepts the bridge, sends requests.
    struct FakeVpcd {
        listener: TcpListener,
    }

    struct FakeConn {
        stream: TcpStream,
        reader: FrameReader,
    }

    impl FakeVpcd {
        fn new() -> FakeVpcd {
            FakeVpcd {
                listener: TcpListener::bind("127.0.0.1:0").unwrap(),
            }
        }
        fn address(&self) -> String {
            self.listener.local_addr().unwrap().to_string()
        }
        fn accept(&self) -> FakeConn {
            let (stream, _) = self.listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            FakeConn {
                stream,
                reader: FrameReader::new(),
            }
        }
    }

    impl FakeConn {
        fn send(&mut self, request: Request<'_>) {
            self.stream
                .write_all(&encode_request(request).unwrap())
                .unwrap();
        }
        fn recv(&mut self) -> Option<Zeroizing<Vec<u8>>> {
            let mut buf = [0u8; 4096];
            loop {
                if let Some(f) = self.reader.next_frame() {
                    return Some(f);
                }
                match self.stream.read(&mut buf) {
                    Ok(0) => return None,
                    Ok(n) => self.reader.push(&buf[..n]),
                    Err(e) => panic!("fake vpcd read failed: {e}"),
                }
            }
        }
        fn transact(&mut self, request: Request<'_>) -> Vec<u8> {
            self.send(request);
            self.recv()
                .expect("the bridge closed instead of answering")
                .to_vec()
        }
        /// The bridge closed its side.
        fn expect_closed(&mut self) {
            assert!(self.recv().is_none(), "expected the bridge to close");
        }
    }

    fn fast_config(address: String) -> BridgeConfig {
        BridgeConfig {
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_millis(50),
            poll_interval: Duration::from_millis(10),
            shutdown_grace: Duration::from_secs(5),
            ..BridgeConfig::new(address)
        }
    }

    const WAIT: Duration = Duration::from_secs(10);

    #[test]
    fn frames_round_trip_and_reassemble_from_pieces() {
        let apdu = [0x00, 0xa4, 0x04, 0x00, 0x05, 0xa0, 0x00, 0x00, 0x03, 0x08];
        let mut stream = Vec::new();
        stream.extend_from_slice(&encode_request(Request::Control(Control::GetAtr)).unwrap());
        stream.extend_from_slice(&encode_request(Request::Apdu(&apdu)).unwrap());
        let big = vec![0x5a; MAX_PAYLOAD];
        stream.extend_from_slice(&encode_frame(&big).unwrap());
        assert_eq!(&stream[..3], &[0, 1, 4]);
        assert_eq!(&stream[3..5], &[0, 10]);

        // Feed one byte at a time.
        let mut r = FrameReader::new();
        let mut frames = Vec::new();
        for b in &stream {
            r.push(&[*b]);
            while let Some(f) = r.next_frame() {
                frames.push(f);
            }
        }
        assert!(!r.is_mid_frame());
        assert_eq!(frames.len(), 3);
        assert_eq!(
            decode_request(&frames[0]).unwrap(),
            Request::Control(Control::GetAtr)
        );
        assert_eq!(decode_request(&frames[1]).unwrap(), Request::Apdu(&apdu));
        assert_eq!(&*frames[2], &big[..]);

        // All at once.
        let mut r = FrameReader::new();
        r.push(&stream);
        assert_eq!(r.next_frame().unwrap().len(), 1);
        assert_eq!(r.next_frame().unwrap().len(), 10);
        assert_eq!(r.next_frame().unwrap().len(), MAX_PAYLOAD);
        assert!(r.next_frame().is_none());

        // A partial frame stays buffered.
        let mut r = FrameReader::new();
        r.push(&[0x00, 0x05, 1, 2]);
        assert!(r.next_frame().is_none());
        assert!(r.is_mid_frame());
        assert_eq!(r.buffered(), 4);
        r.push(&[3, 4, 5]);
        assert_eq!(&*r.next_frame().unwrap(), &[1, 2, 3, 4, 5]);
    }

    #[test]
    fn codec_edge_cases() {
        for c in [
            Control::PowerOff,
            Control::PowerOn,
            Control::Reset,
            Control::GetAtr,
        ] {
            assert_eq!(Control::from_byte(c.byte()), Some(c));
            assert_eq!(decode_request(&[c.byte()]).unwrap(), Request::Control(c));
        }
        assert_eq!(decode_request(&[]), Err(VpcdError::EmptyFrame));
        assert_eq!(decode_request(&[3]), Err(VpcdError::UnknownControl(3)));
        assert_eq!(
            decode_request(&[0xff]),
            Err(VpcdError::UnknownControl(0xff))
        );
        assert_eq!(
            encode_frame(&vec![0; MAX_PAYLOAD + 1]).unwrap_err(),
            VpcdError::TooLong(MAX_PAYLOAD + 1)
        );
        assert_eq!(&*encode_frame(&[]).unwrap(), &[0, 0]);
        let mut r = FrameReader::new();
        r.push(&[0, 0]);
        assert_eq!(r.next_frame().unwrap().len(), 0);
        assert_eq!(
            format!("{:?}", Request::Apdu(&[0x00, 0x20, 0x00, 0x80, 0x31])),
            "Apdu(5 bytes)"
        );
    }

    #[test]
    fn answer_dispatches_to_the_card() {
        let (mut card, seen) = EchoCard::new();
        assert_eq!(
            answer(&mut card, Request::Control(Control::GetAtr))
                .unwrap()
                .to_vec(),
            YUBIKEY_5_ATR.to_vec()
        );
        assert!(answer(&mut card, Request::Control(Control::PowerOn)).is_none());
        assert!(answer(&mut card, Request::Control(Control::Reset)).is_none());
        assert!(answer(&mut card, Request::Control(Control::PowerOff)).is_none());
        assert_eq!(
            answer(&mut card, Request::Apdu(&[0, 0xfd, 0, 0]))
                .unwrap()
                .to_vec(),
            vec![0, 0xfd, 0, 0, 0x90, 0x00]
        );
        let s = seen.lock().unwrap().clone();
        assert_eq!((s.power_on, s.reset, s.power_off), (1, 1, 1));
        assert_eq!(s.commands, vec![vec![0, 0xfd, 0, 0]]);

        for bad in [vec![], vec![0x90], vec![0u8; MAX_PAYLOAD + 1]] {
            card.response_override = Some(bad);
            assert_eq!(
                answer(&mut card, Request::Apdu(&[0, 0xfd, 0, 0]))
                    .unwrap()
                    .to_vec(),
                vec![0x6f, 0x00]
            );
        }
        card.response_override = Some(vec![0u8; MAX_PAYLOAD]);
        assert_eq!(
            answer(&mut card, Request::Apdu(&[0, 0xfd, 0, 0]))
                .unwrap()
                .len(),
            MAX_PAYLOAD
        );
    }

    #[test]
    fn config_and_atr_are_checked_up_front() {
        for bad in [
            "",
            "localhost",
            ":35963",
            "host:",
            "host:0",
            "host:65536",
            "host:x",
        ] {
            assert!(
                matches!(
                    BridgeConfig::new(bad).validate(),
                    Err(Error::VpcdAddress { .. })
                ),
                "{bad:?}"
            );
        }
        for good in ["127.0.0.1:35963", "localhost:1", "[::1]:35963"] {
            BridgeConfig::new(good).validate().unwrap();
        }
        assert!(check_atr(&YUBIKEY_5_ATR).is_ok());
        assert!(matches!(check_atr(&[0x3b]), Err(Error::InvalidAtr { .. })));
        assert!(matches!(
            check_atr(&[0u8; 34]),
            Err(Error::InvalidAtr { .. })
        ));

        struct NoAtr;
        impl VirtualCard for NoAtr {
            fn atr(&self) -> Vec<u8> {
                Vec::new()
            }
            fn power_on(&mut self) {}
            fn power_off(&mut self) {}
            fn reset(&mut self) {}
            fn transmit(&mut self, _: &[u8]) -> Zeroizing<Vec<u8>> {
                Zeroizing::new(vec![0x90, 0])
            }
        }
        assert!(matches!(
            spawn(Box::new(NoAtr), BridgeConfig::new("127.0.0.1:1")),
            Err(Error::InvalidAtr { .. })
        ));
        assert!(matches!(
            spawn(Box::new(NoAtr), BridgeConfig::new("nowhere")),
            Err(Error::VpcdAddress { .. })
        ));
        let mut card = NoAtr;
        assert!(matches!(
            serve(
                &mut card,
                &BridgeConfig::new("127.0.0.1:1"),
                &BridgeControl::new()
            ),
            Err(Error::InvalidAtr { .. })
        ));
    }

    #[test]
    fn serves_reconnects_and_stops_against_a_fake_vpcd() {
        let vpcd = FakeVpcd::new();
        let (card, seen) = EchoCard::new();
        let bridge = spawn(Box::new(card), fast_config(vpcd.address())).unwrap();
        let control = bridge.control().clone();

        let mut conn = vpcd.accept();
        assert!(!control.is_attached(), "attached only once vpcd talks");
        assert_eq!(
            conn.transact(Request::Control(Control::GetAtr)),
            YUBIKEY_5_ATR.to_vec()
        );
        assert!(control.wait_attached(1, WAIT));
        conn.send(Request::Control(Control::PowerOn));
        let select = [0x00, 0xa4, 0x04, 0x00, 0x05, 0xa0, 0x00, 0x00, 0x03, 0x08];
        let mut expected = select.to_vec();
        expected.extend_from_slice(&[0x90, 0x00]);
        assert_eq!(conn.transact(Request::Apdu(&select)), expected);
        // Extended length: 3000 data bytes.
        let mut ext = vec![0x00, 0xdb, 0x3f, 0xff, 0x00, 0x0b, 0xb8];
        ext.extend(std::iter::repeat_n(0xa5, 3000));
        assert_eq!(conn.transact(Request::Apdu(&ext)).len(), ext.len() + 2);
        conn.send(Request::Control(Control::Reset));
        assert_eq!(
            conn.transact(Request::Control(Control::GetAtr)),
            YUBIKEY_5_ATR.to_vec()
        );
        assert_eq!(control.apdus(), 2);

        // vpcd goes away: the card is powered off, the bridge reconnects.
        drop(conn);
        assert!(control.wait_detached(WAIT));
        let mut conn = vpcd.accept();
        assert_eq!(
            conn.transact(Request::Control(Control::GetAtr)),
            YUBIKEY_5_ATR.to_vec()
        );
        assert!(control.wait_attached(2, WAIT));
        assert_eq!(control.attachments(), 2);

        // Fault injection: drop the connection from our side; it comes back.
        control.drop_connection();
        conn.expect_closed();
        let mut conn = vpcd.accept();
        assert_eq!(conn.transact(Request::Apdu(&[0, 0xfd, 0, 0])).len(), 6);
        assert!(control.wait_attached(3, WAIT));

        let (_card, stats) = bridge.stop().unwrap();
        conn.expect_closed();
        assert_eq!(
            stats,
            BridgeStats {
                end: ServeEnd::Stopped,
                attachments: 3,
                apdus: 3
            }
        );
        let s = seen.lock().unwrap().clone();
        assert_eq!(s.power_on, 1);
        assert_eq!(s.reset, 1);
        assert_eq!(s.power_off, 3, "one power off per ended connection");
        assert_eq!(s.commands.len(), 3);
        assert!(!control.is_attached());
    }

    #[test]
    fn stop_finishes_the_apdu_in_progress() {
        let vpcd = FakeVpcd::new();
        let (mut card, seen) = EchoCard::new();
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        card.gate = Some((entered_tx, release_rx));
        let bridge = spawn(Box::new(card), fast_config(vpcd.address())).unwrap();
        let control = bridge.control().clone();
        let mut conn = vpcd.accept();

        conn.send(Request::Apdu(&[0x00, 0x87, 0x11, 0x9a]));
        entered_rx.recv_timeout(WAIT).unwrap();
        // Stop while the card is busy: the answer must still come.
        control.stop();
        std::thread::sleep(Duration::from_millis(50));
        release_tx.send(()).unwrap();
        assert_eq!(
            conn.recv().unwrap().to_vec(),
            vec![0x00, 0x87, 0x11, 0x9a, 0x90, 0x00]
        );
        conn.expect_closed();
        let (_card, stats) = bridge.stop().unwrap();
        assert_eq!(stats.end, ServeEnd::Stopped);
        assert_eq!(seen.lock().unwrap().power_off, 1);
    }

    #[test]
    fn stop_waits_for_a_command_that_has_started_to_arrive() {
        let vpcd = FakeVpcd::new();
        let (card, seen) = EchoCard::new();
        let bridge = spawn(Box::new(card), fast_config(vpcd.address())).unwrap();
        let control = bridge.control().clone();
        let mut conn = vpcd.accept();
        assert_eq!(conn.transact(Request::Control(Control::GetAtr)).len(), 23);

        let frame = encode_request(Request::Apdu(&[0x00, 0x20, 0x00, 0x80])).unwrap();
        conn.stream.write_all(&frame[..3]).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        control.stop();
        std::thread::sleep(Duration::from_millis(100));
        conn.stream.write_all(&frame[3..]).unwrap();
        assert_eq!(conn.recv().unwrap().len(), 6, "the command was answered");
        conn.expect_closed();
        drop(bridge);
        assert_eq!(seen.lock().unwrap().commands.len(), 1);
    }

    #[test]
    fn abort_cuts_the_connection_mid_apdu() {
        let vpcd = FakeVpcd::new();
        let (mut card, seen) = EchoCard::new();
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        card.gate = Some((entered_tx, release_rx));
        let bridge = spawn(Box::new(card), fast_config(vpcd.address())).unwrap();
        let control = bridge.control().clone();
        let mut conn = vpcd.accept();

        conn.send(Request::Apdu(&[0x00, 0x87, 0x11, 0x9a]));
        entered_rx.recv_timeout(WAIT).unwrap();
        control.abort();
        // The host sees the connection die without an answer...
        conn.expect_closed();
        // ...while the card's call still completes.
        release_tx.send(()).unwrap();
        let (_card, stats) = bridge.abort().unwrap();
        assert_eq!(stats.end, ServeEnd::Aborted);
        let s = seen.lock().unwrap().clone();
        assert_eq!(s.commands.len(), 1);
        assert_eq!(s.power_off, 1);
    }

    #[test]
    fn keeps_retrying_an_absent_vpcd_and_stops_promptly() {
        // A port with nothing listening.
        let address = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let bridge = spawn(Box::new(EchoCard::new().0), fast_config(address.clone())).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(!bridge.control().is_attached());
        // vpcd appears later: the bridge finds it.
        let vpcd = match TcpListener::bind(&address) {
            Ok(l) => FakeVpcd { listener: l },
            Err(_) => return, // the port was taken meanwhile; nothing to assert
        };
        let mut conn = vpcd.accept();
        assert_eq!(conn.transact(Request::Control(Control::GetAtr)).len(), 23);
        let started = Instant::now();
        let (_card, stats) = bridge.stop().unwrap();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(stats.attachments, 1);
    }

    #[test]
    fn a_peer_that_accepts_and_hangs_up_silently_is_retried_with_growing_backoff() {
        let vpcd = FakeVpcd::new();
        let config = BridgeConfig {
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_millis(400),
            ..fast_config(vpcd.address())
        };
        let bridge = spawn(Box::new(EchoCard::new().0), config).unwrap();
        vpcd.listener.set_nonblocking(true).unwrap();
        let started = Instant::now();
        let mut accepts = 0;
        while started.elapsed() < Duration::from_millis(800) {
            match vpcd.listener.accept() {
                Ok((conn, _)) => {
                    accepts += 1;
                    drop(conn);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        // 10+20+40+80+160+320 ms: about 6 attempts, not one every 10 ms.
        assert!((2..=10).contains(&accepts), "{accepts} connection attempts");
        assert_eq!(bridge.control().attachments(), 0);
        drop(bridge);
    }

    #[test]
    fn malformed_messages_are_ignored_and_bad_responses_become_6f00() {
        let vpcd = FakeVpcd::new();
        let (mut card, _seen) = EchoCard::new();
        card.response_override = Some(vec![0x90]);
        let bridge = spawn(Box::new(card), fast_config(vpcd.address())).unwrap();
        let mut conn = vpcd.accept();
        conn.stream.write_all(&[0, 0]).unwrap(); // empty frame
        conn.stream.write_all(&[0, 1, 3]).unwrap(); // unknown control
        assert_eq!(
            conn.transact(Request::Apdu(&[0, 0xfd, 0, 0])),
            vec![0x6f, 0x00]
        );
        assert_eq!(conn.transact(Request::Control(Control::GetAtr)).len(), 23);
        drop(bridge);
        conn.expect_closed();
    }

    /// Poll `conn` as pcscd does (ATR request) and send it an APDU, `rounds`
    /// times; every exchange must be answered.
    fn poll_and_transmit(conn: &mut FakeConn, rounds: usize) {
        for _ in 0..rounds {
            assert_eq!(
                conn.transact(Request::Control(Control::GetAtr)),
                YUBIKEY_5_ATR.to_vec()
            );
            assert_eq!(
                conn.transact(Request::Apdu(&[0x00, 0xfd, 0x00, 0x00])),
                vec![0x00, 0xfd, 0x00, 0x00, 0x90, 0x00]
            );
        }
    }

    #[test]
    fn a_card_busy_computing_holds_up_no_other_card() {
        // Card A blocks inside its command (a long computation, e.g. an
        // RSA-4096 key generation) until released; card B, on its own vpcd
        // slot, keeps being polled and answered the whole time.
        let vpcd_a = FakeVpcd::new();
        let vpcd_b = FakeVpcd::new();
        let (mut card_a, seen_a) = EchoCard::new();
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        card_a.gate = Some((entered_tx, release_rx));
        let (card_b, _) = EchoCard::new();
        let bridge_a = spawn(Box::new(card_a), fast_config(vpcd_a.address())).unwrap();
        let bridge_b = spawn(Box::new(card_b), fast_config(vpcd_b.address())).unwrap();
        let mut conn_a = vpcd_a.accept();
        let mut conn_b = vpcd_b.accept();
        assert_eq!(conn_a.transact(Request::Control(Control::GetAtr)).len(), 23);

        conn_a.send(Request::Apdu(&[0x00, 0x47, 0x00, 0x9a]));
        entered_rx.recv_timeout(WAIT).unwrap();
        // A is busy (it cannot finish before the release below).
        poll_and_transmit(&mut conn_b, 20);
        assert!(bridge_b.control().is_attached());
        assert!(bridge_a.control().is_attached());
        release_tx.send(()).unwrap();
        assert_eq!(
            conn_a.recv().unwrap().to_vec(),
            vec![0x00, 0x47, 0x00, 0x9a, 0x90, 0x00]
        );
        // A answers polls again once its command is done (its next command
        // passes the gate at once).
        release_tx.send(()).unwrap();
        poll_and_transmit(&mut conn_a, 1);
        assert_eq!(seen_a.lock().unwrap().commands.len(), 2);
        drop(bridge_a);
        drop(bridge_b);
    }

    #[test]
    fn an_rsa_4096_generation_on_one_emulated_card_holds_up_no_other_card() {
        use crate::emulator::apdu::EmulatedSmartCard;
        use crate::emulator::{ApproveTouch, EmulatedToken, InitOptions};
        use crate::piv::mgmt_crypto::HostAuthentication;
        use crate::secret::ManagementKey;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.state");
        let token = EmulatedToken::init(&path, &InitOptions::default()).unwrap();
        drop(token);
        let card_a = EmulatedSmartCard::open(&path, Arc::new(ApproveTouch)).unwrap();
        let vpcd_a = FakeVpcd::new();
        let vpcd_b = FakeVpcd::new();
        let (card_b, _) = EchoCard::new();
        let bridge_a = spawn(Box::new(card_a), fast_config(vpcd_a.address())).unwrap();
        let bridge_b = spawn(Box::new(card_b), fast_config(vpcd_b.address())).unwrap();
        let mut a = vpcd_a.accept();
        let mut b = vpcd_b.accept();
        a.send(Request::Control(Control::PowerOn));
        let sw = |r: &[u8]| u16::from_be_bytes([r[r.len() - 2], r[r.len() - 1]]);
        let select = [0x00, 0xa4, 0x04, 0x00, 0x05, 0xa0, 0x00, 0x00, 0x03, 0x08];
        assert_eq!(sw(&a.transact(Request::Apdu(&select))), 0x9000);
        // Management key (AES-192 default) through the APDUs a host sends.
        let key =
            ManagementKey::default_for(crate::secret::ManagementKeyAlgorithm::Aes192).unwrap();
        let step1 = HostAuthentication::witness_request(key.algorithm())
            .to_bytes()
            .unwrap();
        let r1 = a.transact(Request::Apdu(&step1));
        assert_eq!(sw(&r1), 0x9000);
        let (auth, step2) =
            HostAuthentication::answer_witness(&key, &r1[..r1.len() - 2], &mut getrandom::SysRng)
                .unwrap();
        let r2 = a.transact(Request::Apdu(&step2.to_bytes().unwrap()));
        assert_eq!(sw(&r2), 0x9000);
        auth.verify_card(&key, &r2[..r2.len() - 2]).unwrap();

        // GENERATE RSA-4096 in 9A (extended length, all the answer at once).
        let generate = [
            0x00, 0x47, 0x00, 0x9a, 0x00, 0x00, 0x05, 0xac, 0x03, 0x80, 0x01, 0x16, 0x00, 0x00,
        ];
        a.send(Request::Apdu(&generate));
        let started = Instant::now();
        // Meanwhile the other card is polled and answered.
        poll_and_transmit(&mut b, 10);
        let b_done = started.elapsed();
        // ...while A's answer has not come yet (an RSA-4096 generation takes
        // far longer than 20 local exchanges).
        a.stream.set_nonblocking(true).unwrap();
        let mut probe = [0u8; 1];
        assert!(
            matches!(a.stream.peek(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock),
            "card A answered before the other card's exchanges were done"
        );
        a.stream.set_nonblocking(false).unwrap();
        let answer = a.recv().unwrap();
        let a_done = started.elapsed();
        eprintln!(
            "other card answered 20 exchanges in {b_done:?}; RSA-4096 generation answered after {a_done:?}"
        );
        assert_eq!(sw(&answer), 0x9000);
        assert_eq!(&answer[..2], &[0x7f, 0x49]);
        drop(bridge_a);
        drop(bridge_b);
    }
}
