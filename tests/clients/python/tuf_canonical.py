"""securesystemslib's canonical JSON of each vector of a vectors file.

Usage: tuf_canonical.py VECTORS.json

Prints a JSON array, one entry per vector, in order:
  {"name": ..., "canonical_hex": <hex of the UTF-8 of encode_canonical(json.loads(input))>}
or, when json.loads or encode_canonical refuses the input,
  {"name": ..., "refused": "<exception type>: <message>"}
The Rust test compares these bytes with the file's expected output and with
signerctl's own encoder. Run by signer-daemon/tests/tuf.rs with the venv's
python (tests/scripts/install-deps.sh installs tuf and securesystemslib).
"""

import json
import sys

import securesystemslib
from securesystemslib.formats import encode_canonical


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:
        vectors = json.load(f)
    out = []
    for v in vectors:
        entry = {"name": v["name"]}
        try:
            text = encode_canonical(json.loads(v["input"]))
            entry["canonical_hex"] = text.encode("utf-8").hex()
        except Exception as e:  # noqa: BLE001 - every refusal is reported
            entry["refused"] = f"{type(e).__name__}: {e}"
        out.append(entry)
    json.dump({"securesystemslib": securesystemslib.__version__, "vectors": out}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
