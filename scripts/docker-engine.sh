#!/usr/bin/env bash
# A private Docker engine for tests: Debian's dockerd with every root (data, exec, pid file, socket)
# under one temporary directory, stopped by its PID when the wrapped command ends (even on failure).
# No systemd and no /var/lib/docker: the machine's own engine, if any, is never touched.
#
#   scripts/docker-engine.sh run -- COMMAND...   start an engine, run COMMAND with DOCKER_HOST set
#                                                 to it, stop the engine, exit with COMMAND's status
#
# The engine's networks come from 198.19.192.0/19 (inside RFC 2544's 198.18.0.0/15, which the lab
# uses; the lab's own segments are 198.18.N.0/24), so no container address is on a real network.
# Needs root (dockerd) and Debian's docker.io package (scripts/install-debian-packages.sh).
set -euo pipefail

die() { echo "docker-engine: $*" >&2; exit 1; }

[ "${1:-}" = run ] || die "usage: $0 run -- COMMAND..."
shift; [ "${1:-}" = -- ] && shift
[ $# -gt 0 ] || die "usage: $0 run -- COMMAND..."
[ "$(id -u)" = 0 ] || die "dockerd needs root"
command -v dockerd >/dev/null || die "dockerd not found: run scripts/install-debian-packages.sh (docker.io)"

root=$(mktemp -d /tmp/bootyard-docker.XXXXXX)
pidfile="$root/dockerd.pid"
forward_before=$(cat /proc/sys/net/ipv4/ip_forward)
forward_policy_before=$(iptables -S FORWARD 2>/dev/null | awk '$1 == "-P" {print $3}')
dockerd_pid=""

# dockerd leaves its iptables chains and rules behind when it stops; remove exactly those (rules
# that jump to a DOCKER* chain or mention our address pool, then the DOCKER* chains) and put the
# FORWARD policy back, so the machine is as the engine found it.
remove_engine_rules() {
    command -v iptables-save >/dev/null || return 0
    local table rule chain
    for table in filter nat; do
        iptables-save -t "$table" 2>/dev/null \
            | grep -E -- '^-A (INPUT|FORWARD|OUTPUT|PREROUTING|POSTROUTING) .*(DOCKER|198\.19\.|docker0|br-[0-9a-f]{12})' \
            | sed 's/^-A /-D /' | while read -r rule; do
                eval "iptables -t $table $rule" 2>/dev/null || true
            done
        for chain in $(iptables-save -t "$table" 2>/dev/null | awk '/^:DOCKER/ {print substr($1, 2)}'); do
            iptables -t "$table" -F "$chain" 2>/dev/null || true
        done
        for chain in $(iptables-save -t "$table" 2>/dev/null | awk '/^:DOCKER/ {print substr($1, 2)}'); do
            iptables -t "$table" -X "$chain" 2>/dev/null || true
        done
    done
    [ -n "$forward_policy_before" ] && iptables -P FORWARD "$forward_policy_before" 2>/dev/null || true
    # The bridges it made (only those holding an address from our pool).
    ip -o -4 addr show 2>/dev/null | awk '$4 ~ /^198\.19\.(19[1-9]|2[0-2][0-9])\./ {print $2}' \
        | grep -E '^(docker0|br-[0-9a-f]{12})$' | sort -u | xargs -r -n1 ip link del 2>/dev/null || true
}

stop_engine() {
    local status=$?
    if [ -n "$dockerd_pid" ] && kill -0 "$dockerd_pid" 2>/dev/null; then
        # Containers first (so their volumes unmount cleanly), then the daemon, by PID.
        DOCKER_HOST="unix://$root/docker.sock" docker ps -q 2>/dev/null \
            | xargs -r env DOCKER_HOST="unix://$root/docker.sock" docker kill >/dev/null 2>&1 || true
        kill -TERM "$dockerd_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "$dockerd_pid" 2>/dev/null; then
            echo "docker-engine: dockerd $dockerd_pid did not stop in 20 s; killing it" >&2
            kill -KILL "$dockerd_pid" 2>/dev/null || true
        fi
    fi
    # Overlay mounts left by a killed engine would make the data root impossible to remove.
    grep -o " $root/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    remove_engine_rules
    echo "$forward_before" > /proc/sys/net/ipv4/ip_forward 2>/dev/null || true
    if [ "${BOOTYARD_KEEP_ENGINE_LOG:-}" ]; then
        cp "$root/dockerd.log" "$BOOTYARD_KEEP_ENGINE_LOG" 2>/dev/null || true
    fi
    rm -rf "$root"
    exit "$status"
}
trap stop_engine EXIT
trap 'exit 130' INT TERM

dockerd \
    --data-root "$root/data" \
    --exec-root "$root/exec" \
    --pidfile "$pidfile" \
    -H "unix://$root/docker.sock" \
    --bip 198.19.191.1/24 \
    --default-address-pool base=198.19.192.0/19,size=24 \
    --storage-driver overlay2 \
    --userland-proxy=true \
    --log-level warn \
    >"$root/dockerd.log" 2>&1 &
dockerd_pid=$!

export DOCKER_HOST="unix://$root/docker.sock"
for _ in $(seq 1 150); do
    docker version --format '{{.Server.Version}}' >/dev/null 2>&1 && break
    kill -0 "$dockerd_pid" 2>/dev/null || { cat "$root/dockerd.log" >&2; die "dockerd exited during start-up"; }
    sleep 0.2
done
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 \
    || { tail -20 "$root/dockerd.log" >&2; die "dockerd did not answer on $DOCKER_HOST in 30 s"; }
echo "docker-engine: dockerd $(docker version --format '{{.Server.Version}}') pid $dockerd_pid on $DOCKER_HOST" >&2

set +e
"$@"
status=$?
set -e
exit "$status"
