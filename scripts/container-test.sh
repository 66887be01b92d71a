#!/usr/bin/env bash
# `npm run test:container`: builds the image from the Containerfile and tests it, on a machine
# with no image registry and where `podman run` cannot start containers. Needs root, podman,
# debootstrap, util-linux (unshare), iproute2, `npm ci` done, and ../shared/data/dogs-vs-cats.
#
#  1. A local base (scripts/container-base.sh) stands in for node:20-bookworm-slim, unless
#     BASE_IMAGE names one.
#  2. podman build --isolation chroot of the default target (the runtime image) and of the test
#     target, whose RUN step classifies 6 real photos with `catdog predict` with npm's registry
#     pointed at a closed port.
#  3. The runtime image, mounted (podman image mount), is started as `docker run` would start it:
#     chroot into it, the image's Env, WorkingDir, User, Entrypoint and Cmd, a fresh /tmp, a data
#     folder bound on /data, and the root file system read-only; in its own PID namespace (catdog
#     is PID 1) and its own network namespace that has only a loopback interface (no network).
#     Checked from outside: cold start to a ready /healthz, the image's HEALTHCHECK command,
#     /api/classify with real photos, SIGTERM with requests in flight (answered, exit 0); then
#     `catdog train --promote` in a second container on the same /data, and a third container
#     that answers with the trained head and finds the features in the cache.
# Environment: BASE_IMAGE, CATDOG_IMAGE (default localhost/catdog:test), KEEP_IMAGE=1 keeps it,
# SKIP_BUILD=1 tests an existing CATDOG_IMAGE without building.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '[container-test %s] %s\n' "$(date -u +%T)" "$*" >&2; }

if [ "${1:-}" = --inside ]; then
  # ------------------------------------------------------------ inside a private mount + network namespace
  mnt=$2 work=$3
  ip link set lo up
  links=$(ip -o link show | awk -F': ' '{print $2}' | tr '\n' ' ')
  say "network namespace: interfaces: $links"
  [ "$links" = "lo " ] || { say "FAIL: expected only lo"; exit 1; }
  cfg="$work/config.json"
  mapfile -d '' ENVV < <(node -e 'const c = require(process.argv[1]); for (const e of c.Env ?? []) process.stdout.write(e + "\0")' "$cfg")
  # As `docker run -e`: the test sends 11 uploads from one address, past the web page's default
  # per-client burst (WEB_RATE_BURST=10), which the web tests cover; here it would refuse the last.
  ENVV+=(WEB_RATE_BURST=50)
  mapfile -d '' ENTRY < <(node -e 'const c = require(process.argv[1]); for (const e of c.Entrypoint ?? []) process.stdout.write(e + "\0")' "$cfg")
  mapfile -d '' CMD < <(node -e 'const c = require(process.argv[1]); for (const e of c.Cmd ?? []) process.stdout.write(e + "\0")' "$cfg")
  mapfile -d '' HEALTH < <(node -e 'const t = require(process.argv[1]).Healthcheck?.Test ?? []; if (t[0] !== "CMD") process.exit(1); for (const e of t.slice(1)) process.stdout.write(e + "\0")' "$cfg")
  workdir=$(node -p 'require(process.argv[1]).WorkingDir || "/"' "$cfg")
  user=$(node -p 'require(process.argv[1]).User || "root"' "$cfg")
  uid=$(awk -F: -v u="$user" '$1 == u {print $3}' "$mnt/etc/passwd")
  gid=$(awk -F: -v u="$user" '$1 == u {print $4}' "$mnt/etc/passwd")
  home=$(awk -F: -v u="$user" '$1 == u {print $6}' "$mnt/etc/passwd")
  [ -n "$uid" ] || { say "FAIL: user $user is not in the image's /etc/passwd"; exit 1; }
  say "image config: user $user ($uid:$gid), workdir $workdir, entrypoint ${ENTRY[*]}, cmd ${CMD[*]}"
  chown "$uid:$gid" "$work/data" # as a new named volume would be: owned by the image's user
  port=$(printf '%s\n' "${ENVV[@]}" | sed -n 's/^PORT=//p')
  port=${port:-5000}
  # The container's mounts: /dev from the host, /data from the data folder, the training photos
  # read-only on /mnt; /tmp is a new tmpfs per container (new_container).
  mount --bind /dev "$mnt/dev"
  mount --bind "$work/data" "$mnt/data"
  mount --bind "$work/train" "$mnt/mnt"
  mount -o remount,bind,ro "$mnt/mnt"
  new_container() {
    if mountpoint -q "$mnt/tmp"; then umount "$mnt/tmp"; fi
    mount -t tmpfs -o mode=1777,size=512m tmpfs "$mnt/tmp"
  }
  # in_container LOG ARGS...: the image's entrypoint with ARGS (or its Cmd) as `docker run` runs
  # it, in the background, PID 1 of a new PID namespace; sets $ns (unshare's pid) and $pid
  # (catdog's pid as seen from here).
  in_container() {
    local log=$1
    shift
    local args=("$@")
    [ ${#args[@]} -gt 0 ] || args=("${CMD[@]}")
    unshare --pid --fork --kill-child --mount-proc="$mnt/proc" \
      chroot --userspec="$uid:$gid" --groups="$gid" "$mnt" \
      /usr/bin/env -i -C "$workdir" HOSTNAME=catdog-test HOME="$home" "${ENVV[@]}" "${ENTRY[@]}" "${args[@]}" >"$log" 2>&1 &
    ns=$!
    pid=
    for _ in $(seq 100); do
      pid=$(cat "/proc/$ns/task/$ns/children" 2>/dev/null | awk '{print $1}')
      [ -n "$pid" ] && break
      sleep 0.05
    done
  }
  exec_in_container() { # a second process in the running container's namespaces (docker exec)
    nsenter --target "$pid" --pid --mount -- chroot --userspec="$uid:$gid" --groups="$gid" "$mnt" \
      /usr/bin/env -i -C "$workdir" HOME="$home" "${ENVV[@]}" "$@"
  }
  wait_ready() { # prints the ms from $1 (ms since epoch) to a 200 from /healthz
    local started=$1
    for _ in $(seq 1200); do
      if ! kill -0 "$ns" 2>/dev/null; then return 1; fi
      if node -e 'fetch(process.argv[1]).then((r) => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1))' "http://127.0.0.1:$port/healthz"; then
        echo $(($(date +%s%3N) - started))
        return 0
      fi
      sleep 0.1
    done
    return 1
  }
  stop_and_wait() { # SIGTERM (unless already sent); the exit code in $rc
    rc=0
    [ "${1:-}" = signalled ] || kill -TERM "$pid"
    wait "$ns" || rc=$?
  }
  shipped=$(node -p 'require(process.argv[1]).active' "$mnt/app/models/registry/active.json")
  photos="$work/photos"

  # ---- container 1: a fresh volume
  new_container
  t0=$(date +%s%3N)
  in_container "$work/run1.log" || true
  ms=$(wait_ready "$t0") || { say "FAIL: container 1 did not get ready"; cat "$work/run1.log" >&2; exit 1; }
  say "container 1: /healthz 200 after $ms ms (cold start: new /tmp, new volume)"
  echo "$ms" >"$work/cold-start-ms"
  sed 's/^/    | /' "$work/run1.log" >&2
  if exec_in_container "${HEALTH[@]}"; then say "container 1: the image's HEALTHCHECK command exits 0"; else say "FAIL: HEALTHCHECK command"; exit 1; fi
  exec_in_container sh -c 'touch /app/x 2>/dev/null && echo writable || echo "root file system read-only; /data: $(stat -c %U /data)"' >&2
  node scripts/container-check-web.mjs "http://127.0.0.1:$port" "$photos" "$shipped" "$pid" >&2 || { cat "$work/run1.log" >&2; exit 1; }
  stop_and_wait signalled
  tail -n 3 "$work/run1.log" | sed 's/^/    | /' >&2
  [ "$rc" = 0 ] || { say "FAIL: container 1 exited $rc after SIGTERM"; exit 1; }
  grep -q 'shutdown complete (exit 0)' "$work/run1.log" || { say "FAIL: no 'shutdown complete' line"; exit 1; }
  say "container 1: SIGTERM → graceful shutdown, exit 0"
  [ -f "$work/data/registry/active.json" ] && [ -f "$work/data/registry/$shipped/head.json" ] || { say "FAIL: registry not seeded"; exit 1; }
  [ -f "$work/data/catdog.sqlite" ] || { say "FAIL: no SQLite store in /data"; exit 1; }

  # ---- container 2: train a head on 40 photos and promote it (same volume)
  new_container
  t0=$(date +%s)
  in_container "$work/train.log" catdog train /mnt --recipe logreg --promote --force
  rc=0; wait "$ns" || rc=$?
  sed 's/^/    | /' "$work/train.log" | grep -v '^    | features .*ETA' >&2 || true
  [ "$rc" = 0 ] || { say "FAIL: catdog train exited $rc"; exit 1; }
  trained=$(node -p 'require(process.argv[1]).active' "$work/data/registry/active.json")
  [ "$trained" != "$shipped" ] && [ -f "$work/data/registry/$trained/head.json" ] || { say "FAIL: no trained head active"; exit 1; }
  say "container 2: catdog train → $trained promoted, in $(($(date +%s) - t0)) s"
  cp "$work/data/reports/train/curves.png" tmp/container-train-curves.png 2>/dev/null || true
  [ -n "$(find "$work/data/features" -type f | head -n 1)" ] || { say "FAIL: no feature cache in /data/features"; exit 1; }

  # ---- container 3: a new container on the same volume answers with the trained head
  new_container
  t0=$(date +%s%3N)
  in_container "$work/run3.log" || true
  ms=$(wait_ready "$t0") || { say "FAIL: container 3 did not get ready"; cat "$work/run3.log" >&2; exit 1; }
  say "container 3: /healthz 200 after $ms ms (new /tmp, the volume of containers 1 and 2)"
  node scripts/container-check-web.mjs "http://127.0.0.1:$port" "$photos" "$trained" >&2 || { cat "$work/run3.log" >&2; exit 1; }
  cached=$(exec_in_container catdog features /mnt 2>/dev/null | tail -n 1)
  say "container 3: catdog features /mnt: $cached"
  case "$cached" in *" 0 computed, 40 already cached"*) ;; *) say "FAIL: the feature cache did not survive"; exit 1 ;; esac
  stop_and_wait
  [ "$rc" = 0 ] || { say "FAIL: container 3 exited $rc after SIGTERM"; cat "$work/run3.log" >&2; exit 1; }
  say "container 3: SIGTERM → exit 0"
  exit 0
fi

# ------------------------------------------------------------ outside
started=$(date +%s)
IMAGE=${CATDOG_IMAGE:-localhost/catdog:test}
for tool in podman debootstrap unshare nsenter ip; do
  command -v "$tool" >/dev/null || { say "needs $tool (apt-get install podman debootstrap iproute2)"; exit 1; }
done
BASE=${BASE_IMAGE:-$(bash scripts/container-base.sh)}
say "base image: $BASE"

node --import tsx scripts/container-photos.ts "${CATDOG_SHARED:-../shared}/data/dogs-vs-cats/train.zip" tmp/container-photos tmp/container-train

# compose.yaml: parsed by Compose (docker-compose from Debian here; `docker compose` where it is),
# with .env.example as the .env, by default and with the redis profile.
compose=()
if docker compose version >/dev/null 2>&1; then compose=(docker compose); elif command -v docker-compose >/dev/null; then compose=(docker-compose); fi
if [ ${#compose[@]} -gt 0 ]; then
  cdir=$(mktemp -d /tmp/catdog-compose.XXXXXX)
  cp compose.yaml "$cdir/" && cp .env.example "$cdir/.env"
  (cd "$cdir" && "${compose[@]}" config >default.yaml && COMPOSE_PROFILES=redis STORE_URL=redis://redis:6379 "${compose[@]}" config >redis.yaml &&
    COMPOSE_PROFILES=scale "${compose[@]}" config >scale.yaml) ||
    { say "FAIL: ${compose[*]} config rejects compose.yaml"; exit 1; }
  grep -q 'DATA_DIR: /data' "$cdir/default.yaml" && grep -Eq "STORE_URL: (''|\"\")?\$" "$cdir/default.yaml" &&
    grep -q 'STORE_URL: redis://redis:6379' "$cdir/redis.yaml" && grep -q -- '--maxmemory-policy' "$cdir/redis.yaml" &&
    grep -q -- 'noeviction' "$cdir/redis.yaml" && grep -q -- '--appendonly' "$cdir/redis.yaml" &&
    for role in gateway web inference jobs; do grep -q "CATDOG_ROLE: $role" "$cdir/scale.yaml" || exit 1; done &&
    grep -q 'REDIS_URL: redis://redis:6379' "$cdir/scale.yaml" ||
    { say "FAIL: compose.yaml resolves to something unexpected (see $cdir)"; exit 1; }
  rm -rf "$cdir"
  say "compose.yaml: ${compose[*]} config resolves it (default: SQLite on /data; profile redis: STORE_URL, AOF, noeviction; profile scale: gateway, web, inference, jobs on Redis)"
else
  say "compose.yaml: no Compose here to parse it (not checked)"
fi

build=(podman build --isolation chroot --format docker --build-arg BASE_IMAGE="$BASE")
if [ "${SKIP_BUILD:-0}" = 1 ] && podman image exists "$IMAGE"; then
  say "SKIP_BUILD=1: testing the existing $IMAGE, not building it"
else
t0=$(date +%s)
say "podman build (runtime image) …"
nice -n 10 "${build[@]}" -t "$IMAGE" . >tmp/container-build.log 2>&1 || { tail -n 60 tmp/container-build.log >&2; say "FAIL: image build"; exit 1; }
grep '^container-prune:\|^prepare-models:' tmp/container-build.log | sed 's/^/    | /' >&2 || true
say "runtime image built in $(($(date +%s) - t0)) s (log: tmp/container-build.log)"
t0=$(date +%s)
nice -n 10 "${build[@]}" --target test -t "$IMAGE-stage" . >tmp/container-build-test.log 2>&1 || { tail -n 40 tmp/container-build-test.log >&2; say "FAIL: test stage"; exit 1; }
grep -E '^(ok  |FAIL|[0-9]+ of [0-9]+ photos)' tmp/container-build-test.log | sed 's/^/    | /' >&2
say "test stage (catdog predict in a RUN step, registry unreachable): passed in $(($(date +%s) - t0)) s"
podman rmi "$IMAGE-stage" >/dev/null 2>&1 || true
fi

size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
say "image size: $((size / 1000000)) MB ($size bytes; podman's figure, uncompressed)"
[ "$size" -le 900000000 ] || { say "FAIL: over 900 MB"; exit 1; }

work=$(mktemp -d /tmp/catdog-container-test.XXXXXX)
mnt=
cleanup() {
  [ -n "$mnt" ] && podman image unmount "$IMAGE" >/dev/null 2>&1 || true
  rm -rf "$work"
  [ "${KEEP_IMAGE:-0}" = 1 ] || podman rmi "$IMAGE" >/dev/null 2>&1 || true
}
trap cleanup EXIT
# The image's run-time config; podman reports the HEALTHCHECK beside it rather than inside it.
podman image inspect "$IMAGE" | node -e 'const [i] = JSON.parse(require("fs").readFileSync(0, "utf8")); process.stdout.write(JSON.stringify({ ...i.Config, Healthcheck: i.Config.Healthcheck ?? i.Healthcheck }))' >"$work/config.json"
node -e 'const c = require(process.argv[1]); if (!c.Healthcheck || !c.User || !(c.Volumes && "/data" in c.Volumes) || !(c.ExposedPorts && "5000/tcp" in c.ExposedPorts)) { console.error("image config lacks healthcheck, user, /data volume or port 5000:", JSON.stringify(c)); process.exit(1); }' "$work/config.json"
mkdir -p "$work/data"
cp -r tmp/container-photos "$work/photos"
cp -r tmp/container-train "$work/train"
chmod -R a+rX "$work/train" "$work/photos"
mnt=$(podman image mount "$IMAGE")
say "image mounted at $mnt"
unshare --mount --net --fork -- bash "$0" --inside "$mnt" "$work"
say "cold start to a ready /healthz: $(cat "$work/cold-start-ms") ms"
say "all container checks passed in $(($(date +%s) - started)) s"
