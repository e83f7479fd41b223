#!/usr/bin/env bash
# Fails when an #include or a target link points up the dependency order of the top-level
# directories (docs/architecture.md, "Dependencies").
#   check_includes.sh <source dir> [<link edges file written by tests/layering/CMakeLists.txt>]
set -euo pipefail

src=${1:?usage: check_includes.sh <source dir> [<link edges file>]}
edges=${2:-}

# What each top-level directory may depend on, besides itself. "*" is anything. A directory not
# listed here may not be included or linked by anyone but the "*" directories.
declare -A allowed=(
  [common]=""
  [config]="common"
  [bpf]="common"
  [cni]="common"
  [ztunnel]="common config bpf"
  [agent]="common config bpf ztunnel cni"
  [controlplane]="common config"
  [cli]="common config bpf ztunnel cni agent controlplane"
  [bench]="*"
  [tests]="*"
  [examples]="*"
  [helm]="*"
)

# No exceptions: a test that needs two components that may not depend on each other lives in
# tests/ (e.g. tests/integration), never beside one of them.

layers=" ${!allowed[*]} "

# ok <from dir> <to dir>: 0 if the dependency is allowed.
ok() {
  local from=$1 to=$2
  [[ $from == "$to" ]] && return 0
  [[ $layers == *" $to "* ]] || return 0  # not one of ours (e.g. weft/config/v1/*.pb.h)
  local allow=" ${allowed[$from]:-} "
  [[ $allow == *" * "* || $allow == *" $to "* ]]
}

failures=0
cd "$src"
for from in "${!allowed[@]}"; do
  [[ -d $from ]] || continue
  while IFS= read -r -d '' file; do
    while IFS=: read -r line inc; do
      to=${inc%%/*}
      [[ $inc == */* ]] || continue
      if ! ok "$from" "$to"; then
        echo "$file:$line: includes \"$inc\": $from/ may not depend on $to/" \
          "(allowed: ${allowed[$from]:-nothing})"
        failures=$((failures + 1))
      fi
    done < <(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$file" |
      sed -E 's/^([0-9]+):[^"]*"([^"]+)".*/\1:\2/')
  done < <(find "$from" \( -name build -prune \) -o -type f \
    \( -name '*.h' -o -name '*.hpp' -o -name '*.cc' -o -name '*.cpp' -o -name '*.c' \) -print0)
done

if [[ -n $edges ]]; then
  while read -r from target to dep; do
    [[ -n $from ]] || continue
    if ! ok "$from" "$to"; then
      echo "target $target ($from/) links $dep ($to/): $from/ may not depend on $to/" \
        "(allowed: ${allowed[$from]:-nothing})"
      failures=$((failures + 1))
    fi
  done <"$edges"
fi

if ((failures > 0)); then
  echo "$failures dependencies point the wrong way (docs/architecture.md, \"Dependencies\")"
  exit 1
fi
echo "every include and link points down"
