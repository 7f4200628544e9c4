"""securesystemslib's HSMSigner against signer-daemon's PKCS#11 module.

PYKCS11LIB names the module (libsigner_pkcs11.so), SIGNER_SOCKET the
daemon. Imports the public key of PKCS#11 key id ARGV[1] (ykcs11 numbering:
2 = slot 9c), signs a TUF root with it through the module, and verifies the
root with python-tuf. Prints one JSON line: uri, scheme, keyid, verified.
Exit 0 only when python-tuf accepts the signature and rejects a tampered
root.
"""

import copy
import json
import sys
from datetime import datetime, timedelta, timezone

from securesystemslib.signer import HSMSigner, Signer
from tuf.api.metadata import Metadata, Root
from tuf.api.exceptions import UnsignedMetadataError


def main() -> int:
    keyid = int(sys.argv[1])
    out = sys.argv[2] if len(sys.argv) > 2 else None
    uri, pubkey = HSMSigner.import_(keyid)
    # The module never uses the PIN: any value is accepted and dropped.
    signer = Signer.from_priv_key_uri(uri, pubkey, lambda _secret: "not-used")
    root = Root(expires=datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=365))
    root.add_key(pubkey, "root")
    md = Metadata(root)
    md.sign(signer)
    # python-tuf verifies the threshold of root signatures against the key.
    md.signed.verify_delegate(Root.type, md.signed_bytes, md.signatures)
    tampered = copy.deepcopy(md)
    tampered.signed.version += 1
    try:
        tampered.signed.verify_delegate(Root.type, tampered.signed_bytes, tampered.signatures)
        print("a tampered root verified", file=sys.stderr)
        return 1
    except UnsignedMetadataError:
        pass
    if out:
        md.to_file(out)
    print(json.dumps({
        "uri": uri,
        "scheme": pubkey.scheme,
        "keyid": pubkey.keyid,
        "public": pubkey.keyval["public"],
        "signature": md.signatures[pubkey.keyid].signature,
        "verified": True,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
