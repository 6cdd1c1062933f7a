#!/usr/bin/env bash
# Builds the worker's container image from a drover binary of ours; nothing is pulled.
#
#   scripts/build-worker-image.sh [BINARY]
#
# BINARY defaults to target/release/drover (built first when missing). The image holds
# exactly the binary, the shared libraries `ldd` lists for it (and the dynamic loader),
# /etc/passwd and /etc/group with root and nobody (tasks run as nobody when the worker
# is root), /tmp, and the worker's data directory; its entrypoint is the binary, its
# default command `worker`. It is tagged drover-worker:<version> and drover-worker:latest,
# or only $DROVER_WORKER_IMAGE when set (name:tag).
#
# DROVER_WORKER_IMAGE_TOOLS="sh sleep ..." adds those host programs (and their
# libraries) under /bin, for tasks that need them: a scratch image has no shell.
#
# Idempotent and fast when nothing changed: the image carries a fingerprint of its
# files (label drover.rootfs) and is left alone when an image of that name has it.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=${1:-target/release/drover}
if [ ! -x "$binary" ] && [ "$binary" = target/release/drover ]; then
  cargo build --release -p drover-cli
fi
[ -x "$binary" ] || { echo "no executable drover binary at $binary" >&2; exit 1; }
command -v docker >/dev/null 2>&1 || { echo "docker is not installed" >&2; exit 1; }
command -v ldd >/dev/null 2>&1 || { echo "ldd is required (libc-bin)" >&2; exit 1; }

version=$("$binary" --version | awk '{print $2}')
[ -n "$version" ] || { echo "cannot read the version of $binary" >&2; exit 1; }
if [ -n "${DROVER_WORKER_IMAGE:-}" ]; then
  tags=("$DROVER_WORKER_IMAGE")
else
  tags=("drover-worker:$version" "drover-worker:latest")
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

# A program and what ldd lists for it, each at the same path as on this host.
add_with_libs() {
  local src=$1 dest=$2
  install -D -m 0755 "$src" "$root$dest"
  ldd "$src" 2>/dev/null | grep -oE '/[^ ]+' | while read -r lib; do
    [ -e "$root$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
  done
}

add_with_libs "$binary" /usr/local/bin/drover
for tool in ${DROVER_WORKER_IMAGE_TOOLS:-}; do
  path=$(command -v "$tool") || { echo "no program $tool on this host" >&2; exit 1; }
  add_with_libs "$(readlink -f "$path")" "/bin/$tool"
done
mkdir -p "$root/etc" "$root/tmp" "$root/var/lib/drover" "$root/etc/drover"
chmod 1777 "$root/tmp"
chmod 0700 "$root/var/lib/drover"
cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$root/etc/nsswitch.conf"

# The fingerprint: every path, mode and content.
fingerprint=$(cd "$root" && find . -print0 | LC_ALL=C sort -z \
  | xargs -0 stat -c '%n %a %s' | sha256sum | cut -c1-16)-$(cd "$root" \
  && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)

current=$(docker image inspect -f '{{index .Config.Labels "drover.rootfs"}}' "${tags[0]}" 2>/dev/null || true)
if [ "$current" = "$fingerprint" ]; then
  for t in "${tags[@]:1}"; do docker tag "${tags[0]}" "$t"; done
  echo "${tags[0]} is up to date ($fingerprint)"
  exit 0
fi

tar -C "$root" --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -cf - . \
  | docker import \
      --change 'ENTRYPOINT ["/usr/local/bin/drover"]' \
      --change 'CMD ["worker"]' \
      --change 'ENV DROVER_DATA_DIR=/var/lib/drover' \
      --change "LABEL drover.rootfs=$fingerprint drover.version=$version" \
      - "${tags[0]}" >/dev/null
for t in "${tags[@]:1}"; do docker tag "${tags[0]}" "$t"; done
echo "built ${tags[*]} ($fingerprint)"
