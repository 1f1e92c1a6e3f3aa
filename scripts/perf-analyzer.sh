#!/usr/bin/env bash
# Installs NVIDIA Triton's load tester, perf_analyzer, for the tests that point it at our
# server, and prints the path of a launcher that runs it. Idempotent; installs under
# target/perf_analyzer unless given another directory.
#
# perf_analyzer ships in PyPI's `perf-analyzer` wheels (2.60.0 here), built for glibc 2.38:
# newer than Debian 12's. So the C runtime it needs (libc6, libstdc++6, libgcc-s1) is taken
# from Debian 13's packages and unpacked beside it, and the launcher starts the binary
# with that loader. Nothing outside the install directory changes.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="$(realpath -m "${1:-$root/target/perf_analyzer}")"
version=2.60.0
launcher="$prefix/bin/perf_analyzer"

if [ -x "$launcher" ] && "$launcher" --version >/dev/null 2>&1; then
  echo "$launcher"
  exit 0
fi

# Only a directory this script made (or the default one) is replaced: a DIR that holds
# anything else is refused.
marker="$prefix/.mlops-perf-analyzer"
if [ "$prefix" != "$root/target/perf_analyzer" ] && [ -d "$prefix" ] \
  && [ -n "$(ls -A "$prefix")" ] && [ ! -e "$marker" ]; then
  echo "perf-analyzer.sh: $prefix exists and was not made by this script; give an empty or new directory" >&2
  exit 1
fi
rm -rf "$prefix"
mkdir -p "$prefix"
touch "$marker"
mkdir -p "$prefix"/{bin,wheel,runtime,debs,apt/lists/partial,apt/cache/archives/partial,apt/sources.d}

# The wheel: pip fetches it for a glibc 2.38 platform whatever this machine's is.
python3 -m pip download --quiet --disable-pip-version-check --no-deps \
  --only-binary=:all: --platform manylinux_2_38_x86_64 \
  --dest "$prefix" "perf-analyzer==$version" >&2
python3 -m zipfile -e "$prefix"/perf_analyzer-"$version"-*.whl "$prefix/wheel"
binary="$prefix/wheel/perf_analyzer/bin/perf_analyzer"
chmod +x "$binary"

# Debian 13's C runtime, through this machine's own mirror, with apt's state kept in the
# install directory.
mirror="$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 || true)"
if [ -z "$mirror" ]; then
  mirror="$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)"
fi
if [ -z "$mirror" ]; then
  echo "perf-analyzer.sh: no Debian mirror in this machine's apt sources" >&2
  exit 1
fi
printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
  "$mirror" > "$prefix/apt/trixie.sources"
apt_opts=(
  -o "Dir::Etc::SourceList=$prefix/apt/trixie.sources"
  -o "Dir::Etc::SourceParts=$prefix/apt/sources.d"
  -o "Dir::State::Lists=$prefix/apt/lists"
  -o "Dir::Cache=$prefix/apt/cache"
  -o "Debug::NoLocking=1"
)
apt-get "${apt_opts[@]}" -qq update >&2
(cd "$prefix/debs" && apt-get "${apt_opts[@]}" -qq download libc6 libstdc++6 libgcc-s1 >&2)
for deb in "$prefix"/debs/*.deb; do
  dpkg-deb --extract "$deb" "$prefix/runtime"
done

libs="$prefix/runtime/usr/lib/x86_64-linux-gnu"
cat > "$launcher" <<LAUNCHER
#!/bin/sh
# perf_analyzer $version under the C runtime it was built for.
exec "$libs/ld-linux-x86-64.so.2" \\
  --library-path "$libs:/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu" \\
  "$binary" "\$@"
LAUNCHER
chmod +x "$launcher"
if ! "$launcher" --version >/dev/null 2>&1; then
  echo "perf-analyzer.sh: perf_analyzer is installed in $prefix but does not start" >&2
  exit 1
fi
echo "$launcher"
