"""securesystemslib's HSMSigner through Yubico's libykcs11 on the emulated card.

Run by tests/tests/ykcs11_conformance.rs with the venv's python
(tests/scripts/install-deps.sh installs securesystemslib, tuf and
python-pkcs11 at their newest releases), with PYKCS11LIB pointing at
libykcs11 and PCSCLITE_CSOCK_NAME at the private pcscd whose one reader
holds the emulated card.

  hsm_signer_ykcs11.py URI PIN_FILE OUT_DIR

URI is the key's HSMSigner URI (hsm:2 = PIV slot 9c, hsm:3 = 9d). Steps:

1. HSMSigner.import_(keyid) reads the public key from the token (the one
   token present: no label needed, as with one YubiKey) and says which
   scheme it is (ecdsa-sha2-nistp256 or -nistp384).
2. A wrong PIN: signing fails (the card refuses it; HSMSigner always logs
   in with the PIN its handler returns) and no signature is produced.
3. Signer.from_priv_key_uri(URI, key, pin handler) signs a TUF root that
   names the key as its only root key (threshold 1); the root is written
   to OUT_DIR/root.json with Metadata.to_file.
4. python-tuf: Metadata.from_file(OUT_DIR/root.json) and
   Root.verify_delegate("root", ...) accept it; the same file with one byte
   of the signed part changed (the root's version 1 -> 2) is rejected with
   UnsignedMetadataError.
5. For an independent check by the caller: OUT_DIR/root.signed (the
   canonical JSON bytes that were signed) and OUT_DIR/root.sig (the DER
   signature) for `openssl dgst -verify`.

Prints one JSON line (uri, scheme, keyid, public key, verified, the
tampered root's rejection). Exit 0 only when every step behaved as above.
"""

import binascii
import importlib.metadata
import json
import os
import re
import sys
from datetime import datetime, timedelta, timezone

from securesystemslib.signer import HSMSigner, Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root


def fail(message: str) -> int:
    print(f"FAILED: {message}", file=sys.stderr)
    return 1


def main() -> int:
    uri, pin_file, out_dir = sys.argv[1:4]
    keyid = int(uri.split(":", 1)[1].split("?", 1)[0])
    with open(pin_file, encoding="utf-8") as f:
        pin = f.read().strip()

    # 1. The public key, from the one token present.
    imported_uri, pubkey = HSMSigner.import_(keyid)
    if not imported_uri.startswith(f"hsm:{keyid}?label="):
        return fail(f"import_ gave the URI {imported_uri!r}")

    # 2. A wrong PIN never yields a signature.
    wrong = Signer.from_priv_key_uri(uri, pubkey, lambda _secret: "000000")
    try:
        wrong.sign(b"must not be signed")
        return fail("a wrong PIN signed")
    except Exception as e:  # python-pkcs11 raises PinIncorrect
        wrong_pin_error = type(e).__name__
    if "Pin" not in wrong_pin_error:
        return fail(f"a wrong PIN failed with {wrong_pin_error}, not a PIN error")

    # 3. A TUF root signed on the card.
    asked = []

    def pin_handler(secret: str) -> str:
        asked.append(secret)
        return pin

    signer = Signer.from_priv_key_uri(uri, pubkey, pin_handler)
    expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=365)
    root = Root(expires=expires)
    root.add_key(pubkey, Root.type)
    md = Metadata(root)
    md.sign(signer)
    if asked != ["pin"]:
        return fail(f"the PIN handler was asked {asked!r}")
    root_path = os.path.join(out_dir, "root.json")
    md.to_file(root_path)

    # 4. python-tuf verifies what was written, and rejects a changed byte.
    loaded = Metadata.from_file(root_path)
    loaded.signed.verify_delegate(Root.type, loaded.signed_bytes, loaded.signatures)
    with open(root_path, "rb") as f:
        raw = f.read()
    changed, n = re.subn(rb'"version":(\s*)1(?=[,}])', rb'"version":\g<1>2', raw)
    if n != 1 or len(changed) != len(raw):
        return fail("root.json does not hold exactly one version 1")
    tampered_path = os.path.join(out_dir, "root.tampered.json")
    with open(tampered_path, "wb") as f:
        f.write(changed)
    tampered = Metadata.from_file(tampered_path)
    try:
        tampered.signed.verify_delegate(Root.type, tampered.signed_bytes, tampered.signatures)
        return fail("a root with a changed byte verified")
    except UnsignedMetadataError as e:
        rejection = str(e)

    # 5. What was signed, for openssl.
    with open(os.path.join(out_dir, "root.signed"), "wb") as f:
        f.write(loaded.signed_bytes)
    with open(os.path.join(out_dir, "root.sig"), "wb") as f:
        f.write(binascii.unhexlify(loaded.signatures[pubkey.keyid].signature))

    print(json.dumps({
        "versions": {
            p: importlib.metadata.version(p)
            for p in ["securesystemslib", "tuf", "python-pkcs11", "cryptography"]
        },
        "uri": uri,
        "imported_uri": imported_uri,
        "scheme": pubkey.scheme,
        "keyid": pubkey.keyid,
        "public": pubkey.keyval["public"],
        "wrong_pin": wrong_pin_error,
        "verified": True,
        "tampered_rejected": rejection,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
