#!/bin/sh
# An example custom bootloader backend for rampart-agent (agent.toml: [bootloader]
# kind = "custom", script = "/usr/lib/rampart/bootloader"). It speaks RAUC's custom-backend
# interface, the four commands the agent runs:
#
#   get-primary               print the slot that boots next: A or B
#   set-primary A|B           make that slot boot next, with a fresh boot counter
#   get-state A|B             print good (it may be booted) or bad
#   set-state A|B good|bad    mark it (good also resets its counter; bad: never boot it)
#
# Exit status 0 is success; on any other the agent stops the step and reports
# bootloader_failed, and nothing unverified is booted. Each call may take up to 60 s.
#
# Here the A/B state lives in a small file that the bootloader reads at power-on (say, a
# first-stage loader reading the boot partition), in the variables Rampart's GRUB and U-Boot
# scripts use: BOOT_ORDER ("A B": A first) and BOOT_A_LEFT / BOOT_B_LEFT (attempts left, which
# the bootloader counts down while the other slot is bootable). For your bootloader, replace
# read_state and write_state with its tool (a vendor utility, efibootmgr, mmc bootpart, ...)
# and keep the four commands' meaning.
#
# Environment: RAMPART_BOOT_STATE (the state file, default /boot/rampart-ab.env) and
# RAMPART_BOOT_TRIES (the counter a slot gets, default 3, as the agent's bootloader.tries).
set -eu

state=${RAMPART_BOOT_STATE:-/boot/rampart-ab.env}
tries=${RAMPART_BOOT_TRIES:-3}

fail() {
    echo "custom-bootloader: $*" >&2
    exit 1
}

number() {
    case "$2" in
        '' | *[!0-9]*) fail "$1=$2 in $state is not a number of boot attempts" ;;
    esac
}

# A missing file is the factory state: A first, both slots bootable.
BOOT_ORDER="A B"
BOOT_A_LEFT=$tries
BOOT_B_LEFT=$tries

read_state() {
    [ -f "$state" ] || return 0
    while IFS='=' read -r name value; do
        case "$name" in
            BOOT_ORDER) BOOT_ORDER=$value ;;
            BOOT_A_LEFT) BOOT_A_LEFT=$value ;;
            BOOT_B_LEFT) BOOT_B_LEFT=$value ;;
            '' | '#'*) ;;
            *) fail "unknown variable '$name' in $state" ;;
        esac
    done <"$state"
    case "$BOOT_ORDER" in
        "A B" | "B A") ;;
        *) fail "BOOT_ORDER=$BOOT_ORDER in $state is not \"A B\" or \"B A\"" ;;
    esac
    number BOOT_A_LEFT "$BOOT_A_LEFT"
    number BOOT_B_LEFT "$BOOT_B_LEFT"
}

# Whole or not at all: written beside the old file, flushed, then renamed over it, so a power
# cut leaves the old state or the new one, never half of each.
write_state() {
    tmp="$state.tmp.$$"
    printf 'BOOT_ORDER=%s\nBOOT_A_LEFT=%s\nBOOT_B_LEFT=%s\n' \
        "$BOOT_ORDER" "$BOOT_A_LEFT" "$BOOT_B_LEFT" >"$tmp"
    sync "$tmp"
    mv -f "$tmp" "$state"
    sync "$(dirname "$state")"
}

slot() {
    case "${1:-}" in
        A | B) ;;
        *) fail "expected slot A or B, got '${1:-}'" ;;
    esac
}

other() { if [ "$1" = A ]; then echo B; else echo A; fi; }
left() { if [ "$1" = A ]; then echo "$BOOT_A_LEFT"; else echo "$BOOT_B_LEFT"; fi; }
set_left() { if [ "$1" = A ]; then BOOT_A_LEFT=$2; else BOOT_B_LEFT=$2; fi; }

number RAMPART_BOOT_TRIES "$tries"
read_state
case "${1:-}" in
    get-primary)
        echo "${BOOT_ORDER%% *}"
        ;;
    set-primary)
        slot "${2:-}"
        BOOT_ORDER="$2 $(other "$2")"
        set_left "$2" "$tries"
        write_state
        ;;
    get-state)
        slot "${2:-}"
        if [ "$(left "$2")" -gt 0 ]; then echo good; else echo bad; fi
        ;;
    set-state)
        slot "${2:-}"
        case "${3:-}" in
            good) set_left "$2" "$tries" ;;
            bad) set_left "$2" 0 ;;
            *) fail "expected good or bad, got '${3:-}'" ;;
        esac
        write_state
        ;;
    *)
        echo "usage: $0 get-primary | set-primary A|B | get-state A|B | set-state A|B good|bad" >&2
        exit 2
        ;;
esac
