#!/usr/bin/env bash
# Builds the Debian packages of fluxrig for aarch64 and armv7 and checks them, and checks
# the OpenWrt init script. CI runs it; it installs what it needs itself (Debian packages,
# the pinned nightly, a pinned cargo-deb) and exits non-zero at the first failure.
#
#   packaging/build.sh            both packages, into ${CARGO_TARGET_DIR:-target}/debian/
#
# For each architecture:
#   1. builds the static release binary exactly as targets/run.sh does
#      (targets/build.sh NAME), then the .deb with
#      cargo deb --no-build --target TRIPLE ([package.metadata.deb] in Cargo.toml);
#   2. checks the package: its file list (dpkg-deb -c) against the expected one, its
#      control fields, `sh -n` on its maintainer scripts, that the binary is static;
#   3. extracts it into a throw-away root (dpkg -x) and, under the target's qemu-user
#      runner from targets/NAME/config.toml: runs `fluxrig --version` and `--help`;
#      activates the packaged sample scenario and runs it with the unit's own ExecStart
#      arguments (paths moved into the throw-away root), feeds one line through the
#      socket, stops it with SIGTERM and checks the exit code, the output, the metrics
#      file, and that every system call made (qemu -strace) is allowed by the unit's
#      SystemCallFilter=;
#   4. `systemd-analyze verify` of the unit inside that root (with the host's units and
#      /usr/bin/kill copied in: verify needs the ExecStart and ExecReload programs and
#      the units it is ordered against), which must print nothing; and
#      `systemd-analyze security --offline` of it, whose exposure must stay under 2.0.
# Then packaging/openwrt/check-init.sh (under busybox's ash, OpenWrt's shell), and each
# .deb's size. The OpenWrt package itself needs the OpenWrt SDK and is not built here.
set -euo pipefail
cd "$(dirname "$0")/.."

# cargo-deb, pinned: the maintainer-script fragments and paths it writes change between
# releases.
CARGO_DEB_VERSION=3.8.0
# Most exposure `systemd-analyze security` may report for the unit (1.4 with systemd 252
# when written); a rise means a hardening line was lost.
MAX_EXPOSURE=2.0

started=$SECONDS
step() { printf '\n=== %s (%ss)\n' "$*" "$((SECONDS - started))"; }
fail() { echo "packaging/build.sh: $*" >&2; exit 1; }

step "tools"
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" = 0 ]; then sudo=(); else sudo=(sudo); fi
# systemd: systemd-analyze; busybox: OpenWrt's shell for the init script check;
# binutils: readelf; procps: /usr/bin/kill, which verify wants for ExecReload=.
wanted=(qemu-user-static binutils procps systemd busybox python3 dpkg)
missing=()
for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    echo "Debian packages present: ${wanted[*]}"
fi
# The binaries are built by targets/build.sh: the pinned nightly with rust-src, linked by
# cargo-zigbuild with Zig (PyPI, pinned in .ci/run), which brings musl: no cross gcc.
source targets/toolchain.env
rustup toolchain install "$FLUXRIG_NIGHTLY" --profile minimal --component rust-src
if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
    echo "installing cargo-deb $CARGO_DEB_VERSION"
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
fi
cargo deb --version
systemd-analyze --version | head -n1

# Every system call the unit's SystemCallFilter= lines allow: the groups of the lines
# without "~", minus those of the lines with "~", expanded by systemd-analyze itself.
expand_group() {
    systemd-analyze syscall-filter "$1" | sed -n '2,$p' | grep -v '^ *#' | tr -s ' \t' '\n' \
        | grep -v '^$' | while read -r item; do
            case $item in
                @*) expand_group "$item" ;;
                *) echo "$item" ;;
            esac
        done
}
allowed_syscalls() {
    local unit=$1 line list group allow deny
    allow=$(mktemp) deny=$(mktemp)
    while read -r line; do
        list=${line#SystemCallFilter=}
        if [ "${list#\~}" != "$list" ]; then
            for group in ${list#\~}; do expand_group "$group"; done >>"$deny"
        else
            for group in $list; do expand_group "$group"; done >>"$allow"
        fi
    done < <(grep '^SystemCallFilter=' "$unit")
    sort -u "$allow" | comm -23 - <(sort -u "$deny")
    rm -f "$allow" "$deny"
}

unit=packaging/systemd/fluxrig.service
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
[ -n "$exec_start" ] || fail "$unit has no ExecStart="
allowed=$(mktemp)
allowed_syscalls "$unit" >"$allowed"
echo "the unit allows $(wc -l <"$allowed") system calls"

work=$(mktemp -d)
rack_pid=
cleanup() {
    [ -n "$rack_pid" ] && kill -KILL "$rack_pid" 2>/dev/null
    rm -rf "$work" "$allowed"
}
trap cleanup EXIT

# The files each package must hold, and nothing else (directories left out).
expected_files="./usr/bin/fluxrig
./usr/lib/systemd/system/fluxrig.service
./usr/share/doc/fluxrig/README.md
./usr/share/doc/fluxrig/README.packaging.md
./usr/share/doc/fluxrig/copyright
./usr/share/fluxrig/sample-scenario.yaml"

summary=()
for name in aarch64 armv7; do
    case $name in
        aarch64) triple=aarch64-unknown-linux-musl; arch=arm64 ;;
        armv7) triple=armv7-unknown-linux-musleabihf; arch=armhf ;;
    esac
    config=targets/$name/config.toml
    runner=$(sed -n 's/^runner = "\(.*\)"$/\1/p' "$config")
    [ -n "$runner" ] || fail "no runner in $config"

    step "$name: build ($triple) and package"
    targets/build.sh "$name"
    deb=$(cargo deb --no-build --target "$triple" | tail -n1)
    [ -f "$deb" ] || fail "cargo deb did not report a package file (got: $deb)"
    echo "$deb"

    step "$name: package contents (dpkg-deb -c) and control"
    dpkg-deb -c "$deb"
    got_files=$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ { print $6 }' | sort)
    [ "$got_files" = "$(sort <<<"$expected_files")" ] \
        || fail "$deb holds other files than expected:"$'\n'"$(diff <(sort <<<"$expected_files") - <<<"$got_files" || true)"
    dpkg-deb -c "$deb" | grep -q '^-rwxr-xr-x root/root .* ./usr/bin/fluxrig$' \
        || dpkg-deb -c "$deb" | grep -q '^-rwxr-xr-x 0/0 .* ./usr/bin/fluxrig$' \
        || fail "usr/bin/fluxrig is not 0755 root"
    dpkg-deb -f "$deb" Package Version Architecture Depends Maintainer
    [ "$(dpkg-deb -f "$deb" Architecture)" = "$arch" ] || fail "$deb: Architecture is not $arch"
    [ "$(dpkg-deb -f "$deb" Depends)" = adduser ] || fail "$deb: Depends is not just adduser"
    control=$work/$name-control
    dpkg-deb -e "$deb" "$control"
    for script in postinst prerm postrm; do
        [ -f "$control/$script" ] || fail "$deb has no $script"
        sh -n "$control/$script" || fail "$deb: $script does not parse"
    done
    grep -q 'adduser --system' "$control/postinst" || fail "postinst does not create the fluxrig user"
    # enable = false, start = false: enabled only if it was before (an upgrade), started
    # never, restarted after an upgrade only if it was running.
    grep -q 'deb-systemd-helper debian-installed fluxrig.service' "$control/postinst" \
        || fail "postinst does not register the unit, or enables it on a fresh install"
    if grep -Eq 'deb-systemd-invoke start|_dh_action=start' "$control/postinst"; then
        fail "postinst starts the unit"
    fi
    echo "maintainer scripts: postinst, prerm, postrm parse; postinst creates the user, registers the unit disabled, does not start it"

    step "$name: extracted into a throw-away root (dpkg -x), run under $runner"
    root=$work/$name-root
    dpkg -x "$deb" "$root"
    bin=$root/usr/bin/fluxrig
    if readelf -l "$bin" | grep -q 'program interpreter'; then
        fail "$bin is dynamically linked"
    fi
    echo "usr/bin/fluxrig: static ($(readelf -h "$bin" | sed -n 's/^ *Machine: *//p'))"
    # shellcheck disable=SC2086 # the runner is a command with its arguments
    version=$(timeout 60 $runner "$bin" --version) || fail "fluxrig --version failed"
    echo "fluxrig --version: $version"
    [[ $version == "fluxrig "* ]] || fail "--version printed: $version"
    # shellcheck disable=SC2086
    timeout 60 $runner "$bin" --help >/dev/null || fail "fluxrig --help failed"
    echo "fluxrig --help: exit 0"

    # The unit's ExecStart, with /usr/bin, /var/lib/fluxrig and /run/fluxrig moved into
    # the throw-away root.
    data=$work/$name-data run=$work/$name-run
    mkdir -p "$run"
    # shellcheck disable=SC2086
    timeout 60 $runner "$bin" scenario import "$root/usr/share/fluxrig/sample-scenario.yaml" --activate --data-dir "$data" \
        || fail "the sample scenario does not import"
    read -r -a args <<<"$(sed -e "s#^/usr/bin/fluxrig ##" -e "s#/var/lib/fluxrig#$data#g" -e "s#/run/fluxrig#$run#g" <<<"$exec_start")"
    echo "running: fluxrig ${args[*]}"
    out=$work/$name-out err=$work/$name-err
    # shellcheck disable=SC2086
    $runner -strace "$bin" "${args[@]}" >"$out" 2>"$err" &
    rack_pid=$!
    # The sample writes 10 messages, one a second; then one line through the socket.
    for _ in $(seq 60); do
        [ -S "$run/in.sock" ] && grep -q '"hello 10 from fluxrig"' "$out" && break
        kill -0 "$rack_pid" 2>/dev/null || fail "the rack exited early: $(grep -v '^[0-9]* ' "$err")"
        sleep 1
    done
    python3 - "$run/in.sock" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"through the socket\n")
s.close()
PY
    for _ in $(seq 30); do grep -q '"through the socket"' "$out" && break; sleep 1; done
    kill -TERM "$rack_pid"
    status=0
    wait "$rack_pid" || status=$?
    rack_pid=
    grep -Ev '^([0-9]+ |--- )' "$err" | tail -n 3
    [ "$status" = 0 ] || fail "the rack exited $status after SIGTERM"
    [ "$(grep -c '"raw_text":"hello [0-9]* from fluxrig"' "$out")" = 10 ] || fail "the rack did not write the 10 sample messages"
    grep -q '"raw_text":"through the socket"' "$out" || fail "the line sent to the socket did not come out"
    grep -q '"level":"info","source":"rack","msg":"stopped: 11 in, 11 out' "$err" || fail "no final statistics (11 in, 11 out) in the log"
    grep -q '^fluxrig_' "$data/metrics.prom" || fail "no metrics in $data/metrics.prom"
    [ ! -e "$run/in.sock" ] || fail "the socket was not removed on stop"
    echo "sample scenario as the unit runs it: 10 generated + 1 socket line out, exit 0 on SIGTERM, metrics written, socket removed"
    used=$(grep -oE '^[0-9]+ [a-z_0-9]+\(' "$err" | sed -E 's/^[0-9]+ //; s/\($//' | sort -u)
    [ -n "$used" ] || fail "qemu -strace recorded no system call"
    refused=$(comm -23 <(echo "$used") "$allowed")
    [ -z "$refused" ] || fail "system calls the unit's SystemCallFilter= refuses: $(tr '\n' ' ' <<<"$refused")"
    echo "system calls made ($(wc -l <<<"$used")), all allowed by SystemCallFilter=: $(tr '\n' ' ' <<<"$used")"

    step "$name: systemd-analyze verify and security of the unit in that root"
    cp -an /usr/lib/systemd/system/. "$root/usr/lib/systemd/system/"
    mkdir -p "$root/usr/bin"
    cp /usr/bin/kill "$root/usr/bin/kill"
    ln -sfn usr/bin "$root/bin"
    ln -sfn usr/lib "$root/lib"
    verify=$(systemd-analyze verify --root="$root" fluxrig.service 2>&1) || fail "systemd-analyze verify failed: $verify"
    [ -z "$verify" ] || fail "systemd-analyze verify printed warnings: $verify"
    echo "systemd-analyze verify --root=ROOT fluxrig.service: no warning"
    exposure_line=$(systemd-analyze security --offline=true --root="$root" fluxrig.service 2>&1 | grep 'Overall exposure level') \
        || fail "systemd-analyze security gave no exposure level"
    echo "systemd-analyze security --offline: ${exposure_line#*: }"
    exposure=$(sed -E 's/.*: ([0-9.]+) .*/\1/' <<<"$exposure_line")
    awk -v e="$exposure" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(e < m) }' \
        || fail "exposure $exposure is not under $MAX_EXPOSURE"

    size=$(stat -c %s "$deb")
    summary+=("$(basename "$deb"): $size bytes ($(awk -v b="$size" 'BEGIN { printf "%.0f KiB", b / 1024 }')), fluxrig $(stat -c %s "$bin") bytes")
done

step "OpenWrt: the init script (busybox ash; the package itself needs the OpenWrt SDK)"
busybox sh -n packaging/openwrt/files/fluxrig.init
busybox sh packaging/openwrt/check-init.sh

step "done"
printf '%s\n' "${summary[@]}"
