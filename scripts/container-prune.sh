#!/bin/sh
# Run by the Containerfile's build stage on the installed app (default /app), after `npm ci
# --omit=dev`: removes what the image's platform cannot use or never reads, and prints what it
# measured. Kept: the native binaries for this platform and architecture, everything JavaScript
# loads, the tfjs wasm binaries.
#   - onnxruntime-node ships its binaries for darwin, linux and win32 on x64 and arm64: only
#     bin/napi-v*/<platform>/<arch> stays;
#   - sharp's binaries come as @img/sharp-<platform>-<arch> packages (npm installs the matching
#     ones only); any other is removed;
#   - source maps (*.map): Node does not read them unless --enable-source-maps;
#   - sqlite3's compiler output and sources: only build/Release/node_sqlite3.node is loaded.
set -eu
app=${1:-/app}
nm="$app/node_modules"
[ -d "$nm" ] || { echo "container-prune: no $nm" >&2; exit 1; }
platform=$(node -p process.platform)
arch=$(node -p process.arch)
libc=$(node -p "process.report.getReport().header.glibcVersionRuntime ? '' : 'musl'")
mb() { du -sk "$@" 2>/dev/null | awk '{s += $1} END {printf "%d MB", s / 1024}'; }
say() { echo "container-prune: $*"; }

say "node_modules before: $(mb "$nm") ($platform-$arch${libc:+-$libc})"
for napi in "$nm"/onnxruntime-node/bin/napi-v*; do
  [ -d "$napi" ] || continue
  for dir in "$napi"/*/*; do
    [ -d "$dir" ] || continue
    rel=${dir#"$napi"/}
    if [ "$rel" = "$platform/$arch" ]; then
      say "onnxruntime-node keeps $(basename "$napi")/$rel: $(mb "$dir")"
    else
      say "onnxruntime-node drops $(basename "$napi")/$rel: $(mb "$dir")"
      rm -rf "$dir"
    fi
  done
  find "$napi" -mindepth 1 -maxdepth 1 -type d -empty -delete
done
ls -d "$nm"/onnxruntime-node/bin/napi-v*/"$platform/$arch" >/dev/null 2>&1 || {
  say "onnxruntime-node has no binary for $platform/$arch"; exit 1; }
for dir in "$nm"/@img/sharp-*; do
  [ -d "$dir" ] || continue
  name=$(basename "$dir")
  case "$name" in
    sharp-"$platform$libc-$arch"|sharp-libvips-"$platform$libc-$arch") say "sharp keeps @img/$name: $(mb "$dir")" ;;
    *) say "sharp drops @img/$name: $(mb "$dir")"; rm -rf "$dir" ;;
  esac
done
maps=$(find "$nm" -type f -name '*.map' | wc -l)
say "source maps: $maps files, $(find "$nm" -type f -name '*.map' -exec du -ck {} + | awk '$2 == "total" {s += $1} END {printf "%d MB", s / 1024}')"
find "$nm" -type f -name '*.map' -delete
if [ -f "$nm/sqlite3/build/Release/node_sqlite3.node" ]; then
  say "sqlite3 keeps build/Release/node_sqlite3.node, drops $(mb "$nm/sqlite3/build/Release/obj" "$nm/sqlite3/build/Release/obj.target" "$nm/sqlite3/deps" "$nm/sqlite3/src") of objects and sources"
  find "$nm/sqlite3/build" -mindepth 1 -maxdepth 1 ! -name Release -exec rm -rf {} +
  find "$nm/sqlite3/build/Release" -mindepth 1 -maxdepth 1 ! -name node_sqlite3.node -exec rm -rf {} +
  rm -rf "$nm/sqlite3/deps" "$nm/sqlite3/src"
fi
say "node_modules after: $(mb "$nm")"
