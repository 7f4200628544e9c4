"""python-tuf and securesystemslib as the independent verifiers of
`signerctl tuf` output. Run by signer-daemon/tests/tuf.rs with the venv's
python (tests/scripts/install-deps.sh installs tuf and securesystemslib).

  tuf_check.py key KEY.json
      The key file signerctl tuf key printed: securesystemslib loads the PEM
      (ECDSA, RSA) or the hex key bytes (Ed25519) with pyca/cryptography, derives keytype, scheme and public value
      itself (SSlibKey.from_crypto) and computes the default key id. Prints
      that as JSON; exit 0 if it equals the file, 1 otherwise.
  tuf_check.py verify-root ROOT.json
      Metadata.from_file, then Root.verify_delegate("root", signed_bytes,
      signatures): exit 0 if the root's own threshold is met, 1 if not.
  tuf_check.py verify-delegate ROOT.json ROLE FILE
      Metadata.from_file of both, then root.verify_delegate(ROLE, ...) of
      FILE (targets, snapshot, timestamp metadata): exit 0 or 1.
  tuf_check.py update-roots ROOT1.json ROOT2.json ...
      The client's root update: TrustedMetadataSet (tuf.ngclient) trusts
      ROOT1, then loads each next root with update_root (version N+1,
      signed by a threshold of version N's root keys and of its own).
      Exit 0 if every root is accepted, 1 at the first rejected one.

  tuf_check.py sign-root OUT.json
      The other direction: python-tuf writes a root whose root role has two
      fresh software keys, RSA-2048 (rsassa-pss-sha256) and Ed25519, with
      threshold 2, signed by both with securesystemslib's CryptoSigner, for
      signerctl tuf verify to check.

Every outcome is printed on stdout, one line, starting with OK or REJECTED.
"""

import json
import sys

import securesystemslib
import tuf
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from securesystemslib.signer import SSlibKey
from tuf.api.exceptions import RepositoryError
from tuf.api.metadata import Metadata, Root
from tuf.ngclient._internal.trusted_metadata_set import TrustedMetadataSet
from tuf.ngclient.config import EnvelopeType


def key(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        given = json.load(f)
    public = given["key"]["keyval"]["public"]
    if given["key"]["keytype"] == "ed25519":
        # securesystemslib's ed25519 keys carry the 32 key bytes in hex.
        crypto_key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public))
    else:
        crypto_key = load_pem_public_key(public.encode("utf-8"))
    derived = SSlibKey.from_crypto(crypto_key)
    loaded = SSlibKey.from_dict(given["keyid"], dict(given["key"]))
    mine = {
        "keyid": derived.keyid,
        "key": {"keytype": derived.keytype, "scheme": derived.scheme, "keyval": derived.keyval},
    }
    print(json.dumps(mine))
    same = mine == given and loaded.keyid == derived.keyid and loaded == derived
    print("OK: securesystemslib computes the same key and key id" if same
          else "REJECTED: securesystemslib computes another key or key id")
    return 0 if same else 1


def verify_root(path: str) -> int:
    md = Metadata[Root].from_file(path)
    if md.signed.type != Root.type:
        print(f"REJECTED: {path} is {md.signed.type} metadata")
        return 1
    try:
        md.signed.verify_delegate(Root.type, md.signed_bytes, md.signatures)
    except Exception as e:  # noqa: BLE001
        print(f"REJECTED: root v{md.signed.version}: {type(e).__name__}: {e}")
        return 1
    result = md.signed.get_verification_result(Root.type, md.signed_bytes, md.signatures)
    print(f"OK: root v{md.signed.version} verified by python-tuf {tuf.__version__}: "
          f"{len(result.signed)} of threshold {result.threshold} keys signed")
    return 0


def verify_delegate(root_path: str, role: str, path: str) -> int:
    root = Metadata[Root].from_file(root_path)
    md = Metadata.from_file(path)
    if md.signed.type != role:
        print(f"REJECTED: {path} is {md.signed.type} metadata, not {role}")
        return 1
    try:
        root.signed.verify_delegate(role, md.signed_bytes, md.signatures)
    except Exception as e:  # noqa: BLE001
        print(f"REJECTED: {role} v{md.signed.version}: {type(e).__name__}: {e}")
        return 1
    print(f"OK: {role} v{md.signed.version} verified against root v{root.signed.version} "
          f"by python-tuf {tuf.__version__}")
    return 0


def update_roots(paths: list[str]) -> int:
    with open(paths[0], "rb") as f:
        trusted = TrustedMetadataSet(f.read(), EnvelopeType.METADATA)
    print(f"OK: trusted root v{trusted.root.version} ({paths[0]})")
    for p in paths[1:]:
        with open(p, "rb") as f:
            data = f.read()
        try:
            root = trusted.update_root(data)
        except RepositoryError as e:
            print(f"REJECTED: {p}: {type(e).__name__}: {e}")
            return 1
        print(f"OK: updated to root v{root.version} ({p})")
    print(f"OK: python-tuf {tuf.__version__}, securesystemslib {securesystemslib.__version__}")
    return 0


def sign_root(out: str) -> int:
    from datetime import datetime, timedelta, timezone

    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
    from securesystemslib.signer import CryptoSigner
    from tuf.api.serialization.json import JSONSerializer

    root = Root(expires=datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=365))
    signers = [
        CryptoSigner(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        CryptoSigner(ed25519.Ed25519PrivateKey.generate()),
    ]
    for signer in signers:
        for role in ("root", "targets", "snapshot", "timestamp"):
            root.add_key(signer.public_key, role)
    root.roles["root"].threshold = 2
    md = Metadata(root)
    for signer in signers:
        md.sign(signer, append=True)
    md.to_file(out, serializer=JSONSerializer(compact=False))
    print("OK: wrote " + out + " signed by " + ", ".join(
        f"{s.public_key.keyid} ({s.public_key.scheme})" for s in signers))
    return 0


def main() -> int:
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "key":
        return key(args[0])
    if cmd == "verify-root":
        return verify_root(args[0])
    if cmd == "verify-delegate":
        return verify_delegate(args[0], args[1], args[2])
    if cmd == "update-roots":
        return update_roots(args)
    if cmd == "sign-root":
        return sign_root(args[0])
    print(f"unknown command {cmd}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
