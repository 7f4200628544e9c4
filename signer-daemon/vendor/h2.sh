#!/usr/bin/env bash
# The vendored, patched h2 (signer-daemon/vendor/h2): the h2 crate from the
# cargo registry plus h2-unix-authority.patch (its header says why and how to
# drop it).
#
#   signer-daemon/vendor/h2.sh check             # vendor/h2 == registry h2 <its version> + the patch
#   signer-daemon/vendor/h2.sh update [VERSION]  # re-vendor VERSION (default: the newest 0.4.x)
#   signer-daemon/vendor/h2.sh refresh-patch     # rewrite the patch's diff from an edited vendor/h2
#
# The crate comes through cargo itself (a throw-away project outside the
# workspace and `cargo fetch`, which checks the registry's checksum), so the
# copy is exactly the published crate. After `update`, run `cargo build` (the
# lock file follows the new version) and tests/tests/grpc_clients.rs.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
vendored="$here/h2"
patch_file="$here/h2-unix-authority.patch"
# Files of the published crate not kept in the repository (CI config, the
# crate's own lock file and .gitignore, which would hide that lock file).
drop=(.github .gitignore .cargo-ok Cargo.lock)

die() {
  echo "h2.sh: $*" >&2
  exit 1
}

vendored_version() {
  sed -n 's/^version = "\(.*\)"$/\1/p' "$vendored/Cargo.toml" | head -n1
}

# fetch VERSION_REQ -> prints the directory of the unpacked registry crate
fetch() {
  local req="$1" tmp
  tmp="$(mktemp -d)"
  mkdir -p "$tmp/src"
  : >"$tmp/src/lib.rs"
  cat >"$tmp/Cargo.toml" <<EOF
[package]
name = "h2-vendor-fetch"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
h2 = "$req"

[workspace]
EOF
  (cd "$tmp" && cargo generate-lockfile -q && cargo fetch -q) </dev/null >&2 ||
    die "cargo could not fetch h2 $req from the registry"
  local version
  version="$(awk '/^name = "h2"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$tmp/Cargo.lock")"
  [ -n "$version" ] || die "no h2 in the resolved lock file"
  local dir
  dir="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"h2-$version" 2>/dev/null | head -n1)"
  [ -d "$dir" ] || die "h2-$version was fetched but its source is not in ${CARGO_HOME:-$HOME/.cargo}/registry/src"
  rm -rf "$tmp"
  echo "$dir"
}

# patched SRC_DIR OUT_DIR: copy the published crate and apply the patch
patched() {
  local src="$1" out="$2"
  cp -r "$src" "$out"
  for f in "${drop[@]}"; do rm -rf "${out:?}/$f"; done
  (cd "$out" && patch -p1 --forward --quiet --no-backup-if-mismatch) <"$patch_file" >&2 ||
    die "h2-unix-authority.patch does not apply to $(basename "$src"): port it by hand in vendor/h2, then run refresh-patch"
}

cmd="${1:-check}"
case "$cmd" in
check)
  version="$(vendored_version)"
  [ -n "$version" ] || die "no version in $vendored/Cargo.toml"
  src="$(fetch "=$version")"
  work="$(mktemp -d)"
  patched "$src" "$work/h2"
  if ! diff -r "$work/h2" "$vendored" >"$work/diff"; then
    cat "$work/diff" >&2
    rm -rf "$work"
    die "vendor/h2 is not h2 $version from the registry plus h2-unix-authority.patch (differences above)"
  fi
  rm -rf "$work"
  echo "vendor/h2 is h2 $version from the registry plus h2-unix-authority.patch"
  ;;
update)
  src="$(fetch "${2:-0.4}")"
  work="$(mktemp -d)"
  patched "$src" "$work/h2"
  rm -rf "$vendored"
  mv "$work/h2" "$vendored"
  rm -rf "$work"
  echo "vendor/h2 is now $(basename "$src") plus h2-unix-authority.patch; run cargo build and cargo test -p signer-e2e --test grpc_clients"
  ;;
refresh-patch)
  version="$(vendored_version)"
  src="$(fetch "=$version")"
  work="$(mktemp -d)"
  cp -r "$src" "$work/a"
  for f in "${drop[@]}"; do rm -rf "${work:?}/a/$f"; done
  cp -r "$vendored" "$work/b"
  header="$(sed '/^diff /,$d' "$patch_file")"
  {
    printf '%s\n\n' "$header"
    (cd "$work" && diff -ruN a b || true) | sed -E 's/^(---|\+\+\+) ([^\t]+)\t.*/\1 \2/'
  } >"$patch_file"
  rm -rf "$work"
  echo "rewrote $patch_file from vendor/h2 (h2 $version)"
  ;;
*)
  die "unknown command '$cmd' (check, update [VERSION], refresh-patch)"
  ;;
esac
