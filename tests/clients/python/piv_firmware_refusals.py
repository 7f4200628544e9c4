"""What a YubiKey of a given firmware refuses, sent to the card as raw PIV
APDUs through yubikit (yubikey-manager 5.9.2), bypassing yubikit's own
version checks: tests/tests/ykman_test_piv.rs runs it after Yubico's
test_piv.py, whose version gates only skip these tests.

Usage: python piv_firmware_refusals.py READER_NAME   (no reader: the one YubiKey)

For each feature and the firmware version it needs, the same command is
sent whatever the card's version: below that version the card must refuse
it (any status word but 9000) and keep nothing (the slot stays empty, the
management key unchanged); from that version it must succeed. So the probe
fails both ways, and a refusal for a wrong reason (a malformed command)
shows up on the newer firmware. Prints one line per probe and a last line
"refusals: N ok"; exits 1 on the first mismatch, naming it.

Features: GET METADATA (5.3), AES-192 management key (5.4), RSA 3072/4096,
Ed25519, X25519 generation and MOVE KEY / DELETE KEY (5.7).
"""

import sys

from ykman.device import list_all_devices
from ykman.pcsc import list_devices
from yubikit.core import Tlv
from yubikit.core.smartcard import ApduError, SmartCardConnection
from yubikit.management import ManagementSession
from yubikit.piv import MANAGEMENT_KEY_TYPE, PivSession

DEFAULT_MGMT = bytes.fromhex("010203040506070801020304050607080102030405060708")
NEW_MGMT = bytes.fromhex("a1a2a3a4a5a6a7a8b1b2b3b4b5b6b7b8c1c2c3c4c5c6c7c8")

INS_GENERATE, INS_MOVE, INS_METADATA, INS_ATTEST, INS_SET_MGMKEY = (
    0x47,
    0xF6,
    0xF7,
    0xF9,
    0xFF,
)
SLOT_9A, SLOT_9C, SLOT_9D = 0x9A, 0x9C, 0x9D


def apdu(piv, ins, p1, p2, data=b""):
    """The status word of one raw command (0x9000 on success)."""
    try:
        piv.protocol.send_apdu(0, ins, p1, p2, data)
        return 0x9000
    except ApduError as e:
        return e.sw


def fresh(conn):
    """A reset PIV application, authenticated with the factory key."""
    piv = PivSession(conn)
    piv.reset()
    piv = PivSession(conn)
    piv.authenticate(DEFAULT_MGMT)
    return piv


def has_key(piv, slot):
    # ATTEST answers with a certificate only for a key generated in the slot
    return apdu(piv, INS_ATTEST, slot, 0) == 0x9000


def main():
    if len(sys.argv) > 2:
        sys.exit("usage: piv_firmware_refusals.py [READER_NAME]")
    if len(sys.argv) == 2:
        devices = list_devices(sys.argv[1])
        if len(devices) != 1:
            sys.exit(f"refusals: {len(devices)} readers match {sys.argv[1]!r}")
        device = devices[0]
    else:
        found = list_all_devices()
        if len(found) != 1:
            sys.exit(f"refusals: {len(found)} YubiKeys found, want one")
        device = found[0][0]
    results = []

    def expect(name, needs, version, sw, kept_nothing=True):
        allowed = version >= needs
        ok = (sw == 0x9000) == allowed and (allowed or kept_nothing)
        what = "accepted" if sw == 0x9000 else f"refused {sw:04x}"
        line = (
            f"{name} (needs {'.'.join(map(str, needs))}): {what}"
            f"{'' if kept_nothing else ', but left state behind'}"
        )
        print(("ok   " if ok else "FAIL ") + line)
        if not ok:
            want = "accept it" if allowed else "refuse it and keep nothing"
            dotted = ".".join(map(str, version))
            sys.exit(f"refusals: firmware {dotted}: {line}; a YubiKey of it would {want}")
        results.append(line)

    with device.open_connection(SmartCardConnection) as conn:
        version = tuple(ManagementSession(conn).read_device_info().version)
        print(f"refusals: firmware {'.'.join(map(str, version))}")

        piv = fresh(conn)
        expect("GET METADATA of 9B", (5, 3, 0), version, apdu(piv, INS_METADATA, 0, 0x9B))

        # SET MANAGEMENT KEY to AES-192: refused below 5.4, and the factory
        # key still authenticates.
        piv = fresh(conn)
        data = bytes([MANAGEMENT_KEY_TYPE.AES192]) + Tlv(0x9B, NEW_MGMT)
        sw = apdu(piv, INS_SET_MGMKEY, 0xFF, 0xFF, data)
        kept = True
        if sw != 0x9000:
            try:
                PivSession(conn).authenticate(DEFAULT_MGMT)
            except Exception:  # noqa: BLE001 (any failure: the key changed)
                kept = False
        expect("SET MANAGEMENT KEY AES-192", (5, 4, 0), version, sw, kept)

        for name, alg in (("RSA3072", 0x05), ("RSA4096", 0x16), ("ED25519", 0xE0), ("X25519", 0xE1)):
            piv = fresh(conn)
            sw = apdu(piv, INS_GENERATE, 0, SLOT_9A, Tlv(0xAC, Tlv(0x80, bytes([alg]))))
            kept = sw == 0x9000 or not has_key(piv, SLOT_9A)
            expect(f"GENERATE {name} in 9A", (5, 7, 0), version, sw, kept)

        # MOVE KEY 9A -> 9C and DELETE KEY 9D, each slot holding a P-256 key.
        piv = fresh(conn)
        for slot in (SLOT_9A, SLOT_9D):
            sw = apdu(piv, INS_GENERATE, 0, slot, Tlv(0xAC, Tlv(0x80, bytes([0x11]))))
            if sw != 0x9000:
                sys.exit(f"refusals: P-256 generation in {slot:02X} failed ({sw:04x})")
        sw = apdu(piv, INS_MOVE, SLOT_9C, SLOT_9A)
        kept = sw == 0x9000 or (has_key(piv, SLOT_9A) and not has_key(piv, SLOT_9C))
        expect("MOVE KEY 9A to 9C", (5, 7, 0), version, sw, kept)
        sw = apdu(piv, INS_MOVE, 0xFF, SLOT_9D)
        kept = sw == 0x9000 or has_key(piv, SLOT_9D)
        expect("DELETE KEY 9D", (5, 7, 0), version, sw, kept)

        PivSession(conn).reset()
    print(f"refusals: {len(results)} ok")


if __name__ == "__main__":
    main()
