#!/bin/sh
# The container's entrypoint: seeds the model registry on the data volume, then execs the command
# (by default `node --import tsx src/main.ts`), so the command is the process that gets SIGTERM.
#
# The image ships the committed registry in /app/models/registry (CATDOG_SHIPPED_REGISTRY). CATDOG_REGISTRY_DIR (in the
# image: /data/registry) is where catdog reads and writes heads; on every start the shipped heads
# that are not there yet are copied in, and active.json only when there is none, so the shipped
# default is active on the first start and heads trained and promoted later (and rollbacks) stay
# as they were in a new container.
set -eu
shipped=${CATDOG_SHIPPED_REGISTRY:-/app/models/registry}
reg=${CATDOG_REGISTRY_DIR:-}
if [ -n "$reg" ] && [ "$reg" != "$shipped" ] && [ -d "$shipped" ]; then
  mkdir -p "$reg"
  for dir in "$shipped"/*/; do
    [ -f "${dir}head.json" ] || continue
    id=$(basename "$dir")
    if [ ! -e "$reg/$id" ]; then
      cp -R "$dir" "$reg/$id.partial-seed-$$" && mv "$reg/$id.partial-seed-$$" "$reg/$id"
    fi
  done
  if [ ! -e "$reg/active.json" ]; then
    cp "$shipped/active.json" "$reg/active.json.seed-$$.tmp" && mv "$reg/active.json.seed-$$.tmp" "$reg/active.json"
    echo "catdog: model registry $reg seeded from the image (active: $(sed -n 's/.*"active": *"\([^"]*\)".*/\1/p' "$reg/active.json"))" >&2
  fi
fi
exec "$@"
