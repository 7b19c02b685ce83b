#!/bin/bash
# [livetok: a copy of the workplace's shared/systemd-sandbox.sh, for a fresh clone (CI) that has no
# ../shared; tests/test_service_systemd.py prefers ../shared's when there is one.]
# systemd-sandbox.sh — boot a throwaway, isolated systemd (systemd-nspawn --boot) on this machine, for testing
# systemd units (Type=notify, watchdog, DynamicUser, LoadCredential, sandboxing) where PID 1 is not
# systemd. Needs root (CAP_SYS_ADMIN), overlayfs, and a systemd installed in / (it boots / itself).
#
#   systemd-sandbox.sh start [DIR...]   boot it; each DIR (e.g. a project with a venv whose scripts have absolute
#                            shebangs) is bind-mounted READ-ONLY at the same path inside. Returns once
#                            the container's systemd has finished booting (is-system-running --wait).
#   systemd-sandbox.sh exec CMD [ARG...]  run CMD inside as root (all the container's namespaces, clean env);
#                            stdin/stdout/stderr pass through, its exit status is returned.
#   systemd-sandbox.sh shell            an interactive bash inside (same as: exec bash -l)
#   systemd-sandbox.sh status           is it running; its PIDs, state dir, the guest's is-system-running
#   systemd-sandbox.sh stop             halt it (SIGTERM to nspawn = orderly halt, SIGKILL after 30 s), then
#                            remove the overlay (upper/, work/, root/) and the run files.
#   systemd-sandbox.sh purge            stop, and also remove the cached systemd-nspawn (pkg/, debs/).
#
# How, and what it never touches:
#   * the guest's root is an overlay: lowerdir=/ (the host's root file system only, not its
#     submounts), upperdir/workdir under the state dir. The overlay is mounted inside a private mount
#     namespace (unshare --mount --propagation private) that only systemd-nspawn lives in: no mount
#     appears in or leaks to the host's namespace, and it vanishes with the container. Every write
#     the guest makes lands in STATE/upper (e.g. STATE/upper/var/lib/private/<unit> for DynamicUser
#     state), readable from the host while it runs.
#   * systemd-nspawn --boot --register=no --keep-unit (no machined, no D-Bus on the host)
#     --private-network (loopback only: nothing the guest listens on is reachable from, or collides
#     with, the host's ports) --link-journal=no, --tmpfs=/tmp (the host's /tmp, which holds the state
#     dir, is not seen), a fresh machine-id. nspawn's own /run/systemd/nspawn (locks) is a tmpfs in
#     the private mount namespace, so nothing is written to the host's /run either. The guest's
#     console (boot progress, shutdown) goes to STATE/console.log.
#   * the guest boots multi-user.target with every unit the host enables masked (its
#     /etc/systemd/system/*.wants/*, the SysV scripts in /etc/rc[2-5].d), plus gettys, timesyncd,
#     networking, timers; journald keeps its journal in /run (Storage=volatile).
#   * if systemd-nspawn is not installed, the distribution's systemd-container and libsystemd-shared
#     packages are fetched with `apt-get download` and unpacked under STATE/pkg (no dpkg install:
#     installing would upgrade the host's systemd to match). Debian/Ubuntu only for that fallback.
#   * cgroups: a hybrid/legacy host (cgroup v1 + cgroup2 at /sys/fs/cgroup/unified) gets a unified
#     (cgroup2-only) guest by default, as on a stock Debian 12 host, so BPF device/IP policies apply;
#     set SANDBOX_UNIFIED=0 for nspawn's own choice. The container's processes go in a
#     cgroup named SANDBOX_NAME made (and removed at stop) in the host's name=systemd and cgroup2
#     hierarchies; no other host process is moved.
#   * `stop` signals only the PIDs this script recorded at start.
#   * inside, there are no cgroup controllers on a v1 host (cgroup2 holds none there): no CPU/memory
#     accounting or limits; BPF device and IP policies work. No udev, no real devices but the pseudo
#     ones nspawn makes. Capabilities missing from the host's bounding set stay missing.
#
# Environment:
#   SANDBOX_DIR    state directory (default: /tmp/systemd-sandbox); holds upper/ work/ root/ pkg/
#                      console.log (the guest's console) nspawn.pid leader.pid
#   SANDBOX_NAME   machine/host name of the guest (default: systemd-sandbox)
#   SANDBOX_MASK   more units to mask, space-separated (e.g. "foo.service bar.timer")
#   SANDBOX_BIND   more host paths to bind read-write (space-separated; the same path inside)
#   SANDBOX_UNIFIED  1 (default): force a cgroup2-only guest; 0: let nspawn decide
#   SANDBOX_BOOT_TIMEOUT  seconds to wait for the guest to finish booting (default 120)
#
# Example (a unit test):
#   systemd-sandbox.sh start /opt/myproject
#   systemd-sandbox.sh exec systemctl start myunit; systemd-sandbox.sh exec systemctl status myunit
#   systemd-sandbox.sh exec journalctl -u myunit -o verbose
#   systemd-sandbox.sh stop
set -euo pipefail

STATE=${SANDBOX_DIR:-/tmp/systemd-sandbox}
NAME=${SANDBOX_NAME:-systemd-sandbox}
UNIFIED=${SANDBOX_UNIFIED:-1}
BOOT_TIMEOUT=${SANDBOX_BOOT_TIMEOUT:-120}
GUEST_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

die() { echo "systemd-sandbox.sh: $*" >&2; exit 1; }
say() { echo "systemd-sandbox.sh: $*" >&2; }

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
# the recorded PIDs, only while they still are our systemd-nspawn / the guest's systemd (a stale
# file must never make us signal a recycled PID)
nspawn_pid() {
    local p; p=$(cat "$STATE/nspawn.pid" 2>/dev/null || true)
    [ -n "$p" ] && [ "$(cat /proc/"$p"/comm 2>/dev/null)" = systemd-nspawn ] && echo "$p" || true
}
leader_pid() {
    local p; p=$(cat "$STATE/leader.pid" 2>/dev/null || true)
    [ -n "$p" ] && [ "$(cat /proc/"$p"/comm 2>/dev/null)" = systemd ] && echo "$p" || true
}
running() {
    local n l
    n=$(nspawn_pid); l=$(leader_pid)
    alive "$l" && [ "$(cat /proc/"$l"/comm 2>/dev/null)" = systemd ] && return 0
    alive "$n" && return 0
    return 1
}

# systemd-nspawn: the installed one, else the distribution's package unpacked under STATE/pkg.
find_nspawn() {
    if command -v systemd-nspawn >/dev/null 2>&1; then
        NSPAWN=(systemd-nspawn); return
    fi
    local pkg=$STATE/pkg libdir
    if [ ! -x "$pkg/usr/bin/systemd-nspawn" ]; then
        command -v apt-get >/dev/null || die "no systemd-nspawn, and no apt-get to fetch it"
        say "systemd-nspawn not installed: fetching systemd-container (apt-get download, unpacked in $pkg)"
        mkdir -p "$STATE/debs" "$pkg"
        (cd "$STATE/debs" && apt-get download -q systemd-container libsystemd-shared >&2) \
            || die "apt-get download systemd-container libsystemd-shared failed"
        local f
        for f in "$STATE"/debs/*.deb; do dpkg-deb -x "$f" "$pkg"; done
    fi
    libdir=$(dirname "$(find "$pkg" -name 'libsystemd-shared-*.so' | head -n1)")
    [ -d "$libdir" ] || die "no libsystemd-shared in $pkg"
    NSPAWN=(env "LD_LIBRARY_PATH=$libdir" "$pkg/usr/bin/systemd-nspawn")
}

mask_units() {
    local etc=$1/etc/systemd/system u f
    mkdir -p "$etc"
    local units=(getty@.service serial-getty@.service console-getty.service container-getty@.service
        getty-static.service getty.target systemd-timesyncd.service networking.service
        systemd-networkd.service systemd-networkd-wait-online.service systemd-resolved.service
        NetworkManager.service NetworkManager-wait-online.service ifupdown-wait-online.service
        ssh.service ssh.socket sshd.service cron.service anacron.service atd.service rsyslog.service
        postgresql.service postgresql@.service mosquitto.service docker.service containerd.service
        unattended-upgrades.service systemd-tmpfiles-clean.timer apt-daily.timer
        apt-daily-upgrade.timer man-db.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer
        dpkg-db-backup.timer logrotate.timer systemd-firstboot.service systemd-pstore.service
        systemd-binfmt.service systemd-modules-load.service proc-sys-fs-binfmt_misc.automount
        ${SANDBOX_MASK:-})
    # everything the host enables
    for f in /etc/systemd/system/*.wants/* /etc/systemd/system/*.requires/*; do
        [ -e "$f" ] || [ -L "$f" ] || continue
        u=$(basename "$f")
        case $u in *.target) continue ;; esac
        units+=("$u")
    done
    # SysV scripts enabled in a runlevel and without a native unit (systemd-sysv-generator makes
    # units of those; a script with a native unit is ignored, and dbus.service must stay)
    for f in /etc/rc[2-5].d/S*; do
        [ -e "$f" ] || continue
        u=$(basename "$f"); u=${u#S[0-9][0-9]}
        [ -e "/lib/systemd/system/$u.service" ] || [ -e "/usr/lib/systemd/system/$u.service" ] \
            || [ -e "/etc/systemd/system/$u.service" ] || units+=("$u.service")
    done
    for u in "${units[@]}"; do
        ln -sfn /dev/null "$etc/$u"
    done
    ln -sfn /lib/systemd/system/multi-user.target "$etc/default.target"
}

prepare_upper() {
    local up=$STATE/upper
    mkdir -p "$up" "$STATE/work" "$STATE/root"
    mask_units "$up"
    mkdir -p "$up/etc/systemd/journald.conf.d"
    printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=64M\n' >"$up/etc/systemd/journald.conf.d/systemd-sandbox.conf"
    # a fresh machine-id (the host's would make the guest's journal and DynamicUser state look like the host's)
    tr -d '-' </proc/sys/kernel/random/uuid >"$up/etc/machine-id"
    echo "$NAME" >"$up/etc/hostname"
}

# Runs inside the private mount namespace made by `unshare` (see cmd_start): mount the overlay,
# then become systemd-nspawn.
cmd__inner() {
    local root=$STATE/root
    # nspawn keeps lock and propagation directories in /run/systemd/nspawn: a private tmpfs, so that
    # nothing is written to the host's /run (which may be on disk)
    mount -t tmpfs -o mode=0755,size=16m systemd-sandbox-run /run
    mount -t overlay overlay -o "lowerdir=/,upperdir=$STATE/upper,workdir=$STATE/work" "$root"
    echo $$ >"$STATE/nspawn.pid"
    exec "${NSPAWN[@]}" "${NSPAWN_ARGS[@]}"
}

cgroup_setup() {
    # a cgroup of our own in the two hierarchies systemd uses, so that the guest's systemd
    # manages that subtree and not the host's root cgroup
    local h
    for h in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified; do
        [ -f "$h/cgroup.procs" ] || continue
        mkdir -p "$h/$NAME"
        echo "$BASHPID" >"$h/$NAME/cgroup.procs"
    done
}

cgroup_cleanup() {
    local h d
    for h in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified; do
        [ -d "$h/$NAME" ] || continue
        # deepest first
        find "$h/$NAME" -depth -type d 2>/dev/null | while read -r d; do rmdir "$d" 2>/dev/null || true; done
        [ -d "$h/$NAME" ] && say "warning: $h/$NAME not removed (processes left in it?)"
    done
    return 0
}

cmd_start() {
    [ "$(id -u)" = 0 ] || die "run as root"
    running && die "already running (nspawn PID $(nspawn_pid)); systemd-sandbox.sh stop first"
    [ -x /lib/systemd/systemd ] || die "no /lib/systemd/systemd in / to boot"
    if [ -e "$STATE/upper" ] || [ -e "$STATE/work" ]; then
        say "removing the overlay of a previous run"
        rm -rf --one-file-system "$STATE/upper" "$STATE/work"
    fi
    mkdir -p "$STATE"
    find_nspawn
    prepare_upper
    rm -f "$STATE/nspawn.pid" "$STATE/leader.pid"

    NSPAWN_ARGS=(--boot --directory="$STATE/root" --machine="$NAME" --register=no --private-network
        --keep-unit --link-journal=no --tmpfs=/tmp --console=read-only --resolv-conf=off --timezone=off
        --setenv=SYSTEMD_LOG_COLOR=0)
    local d
    for d in "$@"; do
        d=$(realpath -e "$d") || die "no such directory: $d"
        NSPAWN_ARGS+=(--bind-ro="$d")
    done
    for d in ${SANDBOX_BIND:-}; do
        NSPAWN_ARGS+=(--bind="$(realpath -e "$d")")
    done
    # arguments for the guest's systemd: its boot progress on the console (console.log)
    NSPAWN_ARGS+=(-- systemd.show_status=yes)
    export SANDBOX_DIR=$STATE SANDBOX_NAME=$NAME
    local unified_env=()
    [ "$UNIFIED" = 1 ] && unified_env=(SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1)
    # pass the arrays to the inner step through the environment (NUL-free, one per line)
    export SANDBOX_NSPAWN; SANDBOX_NSPAWN=$(printf '%s\n' "${NSPAWN[@]}")
    export SANDBOX_NSPAWN_ARGS; SANDBOX_NSPAWN_ARGS=$(printf '%s\n' "${NSPAWN_ARGS[@]}")
    (
        cgroup_setup
        exec setsid env "${unified_env[@]}" unshare --mount --propagation private -- "$0" _inner \
            </dev/null >"$STATE/console.log" 2>&1
    ) &
    local t0=$SECONDS n="" l=""
    # the container's PID 1 is a child of systemd-nspawn
    while [ $((SECONDS - t0)) -lt 30 ]; do
        n=$(cat "$STATE/nspawn.pid" 2>/dev/null || true)
        if alive "$n"; then
            for l in $(cat /proc/"$n"/task/*/children 2>/dev/null); do
                [ "$(cat /proc/"$l"/comm 2>/dev/null)" = systemd ] && break 2
            done
            l=""
        elif [ -n "$n" ]; then
            break
        fi
        sleep 0.2
    done
    if [ -z "$l" ]; then
        say "the container did not start; its console:"; tail -n 30 "$STATE/console.log" >&2
        cmd_stop >/dev/null 2>&1 || true
        exit 1
    fi
    echo "$l" >"$STATE/leader.pid"
    say "nspawn PID $n, guest systemd PID $l (host view); console: $STATE/console.log"
    # wait for the guest manager's private socket, then for the end of the boot
    while [ ! -S "/proc/$l/root/run/systemd/private" ] && [ $((SECONDS - t0)) -lt "$BOOT_TIMEOUT" ]; do
        alive "$l" || { say "the guest's systemd died; console:"; tail -n 30 "$STATE/console.log" >&2; exit 1; }
        sleep 0.2
    done
    local st
    st=$(timeout "$BOOT_TIMEOUT" "$0" exec systemctl is-system-running --wait 2>&1) || true
    say "booted in $((SECONDS - t0)) s: is-system-running: ${st:-timeout}"
    if [ "$st" != running ]; then
        "$0" exec systemctl --failed --no-legend --no-pager >&2 || true
    fi
}

cmd_exec() {
    [ $# -gt 0 ] || die "exec: a command is needed"
    local l
    l=$(leader_pid)
    alive "$l" || die "not running (systemd-sandbox.sh start)"
    # Without a terminal on stdin, run in a new session: a command in a background process group that
    # touches the caller's controlling terminal (systemctl's password agent does) would be stopped.
    local detach=()
    [ -t 0 ] || detach=(setsid -w)
    exec "${detach[@]}" nsenter --target "$l" --mount --uts --ipc --net --pid --cgroup --root --wd -- \
        /usr/bin/env -i PATH="$GUEST_PATH" HOME=/root USER=root LOGNAME=root LANG=C.UTF-8 \
        TERM="${TERM:-dumb}" SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"
}

cmd_status() {
    if running; then
        echo "running: nspawn PID $(nspawn_pid), guest PID 1 = host PID $(leader_pid); state $STATE"
        "$0" exec systemctl is-system-running || true
    else
        echo "not running (state $STATE)"; return 3
    fi
}

cmd_stop() {
    local n l i
    n=$(nspawn_pid); l=$(leader_pid)
    if alive "$n"; then
        kill -TERM "$n" 2>/dev/null || true       # nspawn: orderly halt of the guest
        for i in $(seq 1 150); do alive "$n" || break; sleep 0.2; done
    fi
    if alive "$n" || alive "$l"; then
        say "not halted in 30 s: SIGKILL to the container (PIDs $n $l)"
        [ -n "$l" ] && [ "$(cat /proc/"$l"/comm 2>/dev/null)" = systemd ] && kill -KILL "$l" 2>/dev/null || true
        alive "$n" && kill -KILL "$n" 2>/dev/null || true
        for i in $(seq 1 50); do { alive "$n" || alive "$l"; } || break; sleep 0.2; done
    fi
    if alive "$n"; then die "nspawn PID $n still alive; overlay kept"; fi
    cgroup_cleanup
    rm -rf --one-file-system "$STATE/upper" "$STATE/work"
    rmdir "$STATE/root" 2>/dev/null || true
    rm -f "$STATE/nspawn.pid" "$STATE/leader.pid"
    say "stopped; overlay removed (console log kept: $STATE/console.log)"
}

cmd=${1:-}; shift || true
case $cmd in
    start) cmd_start "$@" ;;
    exec) cmd_exec "$@" ;;
    shell) cmd_exec bash -l ;;
    status) cmd_status ;;
    stop) cmd_stop ;;
    purge) cmd_stop; rm -rf --one-file-system "$STATE/pkg" "$STATE/debs" ;;
    _inner)
        mapfile -t NSPAWN <<<"$SANDBOX_NSPAWN"
        mapfile -t NSPAWN_ARGS <<<"$SANDBOX_NSPAWN_ARGS"
        cmd__inner ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; [ -z "$cmd" ] || exit 2 ;;
esac
