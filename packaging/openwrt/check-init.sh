#!/bin/sh
# Checks the OpenWrt init script without OpenWrt: `sh -n` on it, then runs its
# start_service, reload_service and service_triggers against the shipped UCI config
# (files/fluxrig.config, parsed here) with procd's and UCI's shell functions replaced by
# stubs that record what they are given, and compares the recorded procd calls with the
# expected ones. What procd itself then does (user switch, respawn, term_timeout) needs
# a real OpenWrt; see packaging/README.md.
#
#   packaging/openwrt/check-init.sh        exits non-zero on the first difference
# The stubs are called from the sourced init script, which shellcheck cannot follow.
# shellcheck disable=SC1090,SC2034,SC2317
set -eu
here=$(cd "$(dirname "$0")" && pwd)
init="$here/files/fluxrig.init"
config="$here/files/fluxrig.config"

sh -n "$init"
echo "sh -n files/fluxrig.init: ok"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One run of the script in a subshell: $1 = value of `enabled`, $2 = whether the data
# folder has an active scenario, then the functions to call. Prints the procd calls.
run_init() {
    # Not named like the init script's own locals (`local enabled` would hide them).
    test_enabled=$1 test_active=$2
    shift 2
    rm -rf "$work/data" "$work/run"
    mkdir -p "$work/data/scenarios"
    [ "$test_active" = yes ] && echo 'name: x' >"$work/data/scenarios/active.yaml"
    echo x >"$work/data/cluster.key.pub"
    (
        # UCI: the `main` section of the shipped config, with enabled and data_dir
        # overridden for the test.
        uci_value() {
            case $1 in
                enabled) echo "$test_enabled"; return ;;
                data_dir) echo "$work/data"; return ;;
            esac
            sed -n "s/^[[:space:]]*option $1 '\(.*\)'\$/\1/p" "$config"
        }
        config_load() { [ "$1" = fluxrig ]; }
        config_get() {
            v=$(uci_value "$3")
            [ -n "$v" ] || v=${4:-}
            eval "$1=\$v"
        }
        config_get_bool() { config_get "$@"; }
        config_list_foreach() {
            sed -n "s/^[[:space:]]*list $2 '\(.*\)'\$/\1/p" "$config" | while read -r item; do
                "$3" "$item"
            done
        }
        # procd: record each call.
        procd_open_instance() { echo "open_instance $*"; }
        procd_close_instance() { echo "close_instance"; }
        procd_set_param() { echo "set $*"; }
        procd_append_param() { echo "append $*"; }
        procd_send_signal() { echo "send_signal $*"; }
        procd_add_config_trigger() { echo "config_trigger $*"; }
        # Ownership needs the fluxrig user of a real install: recorded, not applied.
        chown() { echo "chown $*" | sed "s#$work#WORK#g"; }
        chgrp() { echo "chgrp $*" | sed "s#$work#WORK#g"; }
        . "$init"
        RUN_DIR="$work/run"
        for f in "$@"; do
            "$f" 2>&1 || echo "$f returned $?"
        done
    ) | sed "s#$work#WORK#g"
}

check() {
    name=$1 got=$2 want=$3
    if [ "$got" != "$want" ]; then
        echo "init script, $name: procd calls differ" >&2
        printf 'want:\n%s\ngot:\n%s\n' "$want" "$got" >&2
        exit 1
    fi
    echo "init script, $name: ok"
}

check "start (enabled, active scenario)" "$(run_init 1 yes start_service)" "chgrp fluxrig WORK/data/cluster.key.pub
chown fluxrig:fluxrig WORK/run
open_instance main
set command /usr/bin/fluxrig run --data-dir WORK/data --log-format text --log-level info
append command --listen unix:/var/run/fluxrig/in.sock
append command --metrics-file /var/run/fluxrig/metrics.prom
set user fluxrig
set group fluxrig
set no_new_privs 1
set stdout 1
set stderr 1
set respawn 3600 5 5
set term_timeout 120
close_instance"

check "start (disabled)" "$(run_init 0 yes start_service)" \
    "fluxrig is disabled: set 'option enabled 1' in /etc/config/fluxrig"

check "start (no active scenario)" "$(run_init 1 no start_service)" \
    "fluxrig: no active scenario in WORK/data; first: fluxrig scenario import FILE --activate --data-dir WORK/data
start_service returned 1"

check "reload" "$(run_init 1 yes reload_service)" "chgrp fluxrig WORK/data/cluster.key.pub
send_signal fluxrig main HUP"

check "triggers" "$(run_init 1 yes service_triggers)" \
    "config_trigger config.change fluxrig /etc/init.d/fluxrig restart"
