#!/bin/sh
# Prints, one per line, the Debian packages (pkg:arch) that provide the shared libraries the given
# binaries load, so a runtime image installs exactly those. Run where the binaries were built
# (the Containerfile's build stage). Fails, naming it, if a library belongs to no package.
set -eu
[ $# -gt 0 ] || { echo "usage: $0 BINARY..." >&2; exit 2; }
for bin in "$@"; do
  ldd "$bin" > /dev/null || { echo "runtime-debs: $bin is not a dynamically linked binary" >&2; exit 1; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for bin in "$@"; do
  ldd "$bin"
done | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u > "$tmp/libs"
# Debian 12 merged /usr: dpkg knows some libraries under /lib, others under /usr/lib. Ask about
# every spelling of every library in one dpkg call (dpkg -S is slow to start).
while read -r lib; do
  real=$(readlink -f "$lib")
  for p in "$lib" "$real" "/usr$lib" "${lib#/usr}" "/usr$real" "${real#/usr}"; do
    printf '%s %s\n' "$lib" "$p"
  done
done < "$tmp/libs" | sort -u > "$tmp/candidates"
cut -d' ' -f2 "$tmp/candidates" | xargs dpkg -S 2>/dev/null > "$tmp/owners" || true
awk 'NR == FNR { sub(/: /, " "); owner[$2] = $1; next }
     { lib = $1; if (!(lib in seen)) seen[lib] = "" }
     ($2 in owner) && seen[lib] == "" { seen[lib] = owner[$2] }
     END {
       bad = 0
       for (l in seen) {
         if (seen[l] == "") { print "runtime-debs: no package owns " l > "/dev/stderr"; bad = 1 }
         else print seen[l]
       }
       exit bad
     }' "$tmp/owners" "$tmp/candidates" | sort -u
