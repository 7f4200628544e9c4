//! The YubiKey Management and OTP applets, reduced to what identifies the
//! device: ykman selects Management and reads the device information
//! (serial, firmware, form factor, capabilities) before it opens the PIV
//! applet; without Management it falls back to the OTP applet for the
//! serial. The emulated YubiKey has only the PIV applet: that is what the
//! capabilities say.

use crate::emulator::card::Card;
use crate::piv::apdu::{CommandApdu, ResponseApdu, StatusWord};
use crate::piv::tlv;

/// READ CONFIG (device information) of the Management applet.
const INS_READ_CONFIG: u8 = 0x1d;
/// The OTP applet's configuration instruction (P1 is the "slot").
const INS_OTP_CONFIG: u8 = 0x01;
/// OTP "slot" that reads the serial number.
const OTP_SLOT_DEVICE_SERIAL: u8 = 0x10;

/// Device information tags (yubikit `management.py`).
mod info_tag {
    pub const USB_SUPPORTED: u32 = 0x01;
    pub const SERIAL: u32 = 0x02;
    pub const USB_ENABLED: u32 = 0x03;
    pub const FORM_FACTOR: u32 = 0x04;
    pub const VERSION: u32 = 0x05;
    pub const AUTO_EJECT_TIMEOUT: u32 = 0x06;
    pub const CHALLENGE_RESPONSE_TIMEOUT: u32 = 0x07;
    pub const DEVICE_FLAGS: u32 = 0x08;
    pub const CONFIG_LOCK: u32 = 0x0a;
    /// 1 when the device enforces PIN complexity (firmware 5.7+).
    pub const PIN_COMPLEXITY: u32 = 0x16;
}

/// Capability bit of the PIV applet (the only one emulated).
const CAPABILITY_PIV: u16 = 0x0010;
/// Form factor: USB-A keychain (also what the attestation extension says).
const FORM_FACTOR_USB_A_KEYCHAIN: u8 = 0x01;

/// SELECT of the Management applet answers its version as text.
pub(super) fn management_select_response(card: &mut Card) -> ResponseApdu {
    let v = card.state().firmware();
    let text = format!(
        "Virtual mgr - FW version {}.{}.{}",
        v.major, v.minor, v.patch
    );
    ResponseApdu::new(text.into_bytes(), StatusWord::Success)
}

/// Management applet instructions: READ CONFIG only.
pub(super) fn management(card: &mut Card, apdu: &CommandApdu) -> ResponseApdu {
    if apdu.ins != INS_READ_CONFIG {
        return ResponseApdu::status(StatusWord::InsNotSupported);
    }
    if apdu.p1 != 0 || apdu.p2 != 0 {
        return ResponseApdu::status(StatusWord::IncorrectP1P2);
    }
    match device_info(card) {
        Some(data) => ResponseApdu::new(data, StatusWord::Success),
        None => ResponseApdu::status(StatusWord::NoPreciseDiagnosis),
    }
}

/// The device information: a length byte, then TLVs.
fn device_info(card: &mut Card) -> Option<Vec<u8>> {
    // GET SERIAL is the card command this counts as.
    let serial = card.serial();
    let firmware = card.state().firmware();
    let capabilities = CAPABILITY_PIV.to_be_bytes();
    let mut tlvs = Vec::with_capacity(48);
    for (t, value) in [
        (info_tag::USB_SUPPORTED, &capabilities[..]),
        (info_tag::SERIAL, &serial.to_be_bytes()[..]),
        (info_tag::USB_ENABLED, &capabilities[..]),
        (info_tag::FORM_FACTOR, &[FORM_FACTOR_USB_A_KEYCHAIN][..]),
        (info_tag::VERSION, &firmware.to_bytes()[..]),
        (info_tag::AUTO_EJECT_TIMEOUT, &[0, 0][..]),
        (info_tag::CHALLENGE_RESPONSE_TIMEOUT, &[15][..]),
        (info_tag::DEVICE_FLAGS, &[0][..]),
        (info_tag::CONFIG_LOCK, &[0][..]),
    ] {
        tlv::write(&mut tlvs, t, value).ok()?;
    }
    // Only a card made with PIN complexity says so (firmware 5.7+; the tag
    // is absent on older firmware, as yubikit reads it: absent = off).
    if card.state().pin_complexity() {
        tlv::write(&mut tlvs, info_tag::PIN_COMPLEXITY, &[1]).ok()?;
    }
    let len = u8::try_from(tlvs.len()).ok()?;
    let mut out = Vec::with_capacity(tlvs.len() + 1);
    out.push(len);
    out.extend_from_slice(&tlvs);
    Some(out)
}

/// SELECT of the OTP applet answers its status: firmware version,
/// programming sequence (0: no OTP slot configured), touch level (LE u16).
pub(super) fn otp_select_response(card: &mut Card) -> ResponseApdu {
    let v = card.state().firmware().to_bytes();
    ResponseApdu::new(vec![v[0], v[1], v[2], 0, 0, 0], StatusWord::Success)
}

/// OTP applet instructions: reading the serial number only.
pub(super) fn otp(card: &mut Card, apdu: &CommandApdu) -> ResponseApdu {
    if apdu.ins != INS_OTP_CONFIG {
        return ResponseApdu::status(StatusWord::InsNotSupported);
    }
    if apdu.p1 != OTP_SLOT_DEVICE_SERIAL || apdu.p2 != 0 {
        return ResponseApdu::status(StatusWord::IncorrectP1P2);
    }
    ResponseApdu::new(card.serial().to_be_bytes().to_vec(), StatusWord::Success)
}
