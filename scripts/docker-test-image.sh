#!/usr/bin/env bash
# Builds the image the docker driver's tests run: `drover-test-base:1`, a root file
# system assembled from this host's own binaries (a shell and a few coreutils) and the
# libraries `ldd` lists for them, loaded with `docker import`. Nothing is pulled: the
# machines Drover is tested on cannot reach a registry. Idempotent: an existing image
# is kept (pass --rebuild to replace it). Prints the image's name.
set -euo pipefail
IMAGE=${DROVER_TEST_IMAGE:-drover-test-base:1}
if [ "${1:-}" != "--rebuild" ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "$IMAGE"
  exit 0
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/proc" "$root/dev" "$root/sys"
chmod 1777 "$root/tmp"
copy_with_libs() {
  local src=$1 dest=$2
  cp -L "$src" "$root$dest"
  # `ldd` lines: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or the loader
  # "/lib64/ld-linux-x86-64.so.2 (0x...)".
  ldd "$src" 2>/dev/null | grep -o '/[^ ]*' | while read -r lib; do
    [ -e "$root$lib" ] && continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}
copy_with_libs "$(type -P dash)" /bin/sh
for tool in sleep cat true false head tail ls echo env id mkdir touch wc rm; do
  copy_with_libs "$(type -P "$tool")" "/bin/$tool"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
tar -C "$root" -c . | docker import --change 'ENV PATH=/bin' - "$IMAGE" >/dev/null
echo "$IMAGE"
