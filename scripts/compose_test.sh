#!/usr/bin/env bash
# make compose-test: the deployment of docs/deploy.md, for real, on a private Docker engine.
#
#  1. compose.yaml validates offline for every profile, and refuses to start without .env's
#     required settings; promtool checks the Prometheus config, alert rules and every dashboard
#     query's syntax.
#  2. A private dockerd (scripts/docker-engine.sh) gets local base and stand-in images
#     (scripts/build-base-images.sh: no registry is reachable) and builds bootyard's image offline
#     from host-built wheels.
#  3. `docker compose up --wait` brings up redis, setup, dhcp, tftp, http, blockexport, prometheus and alertmanager; every
#     service must be healthy, and dhcp and tftp must load their compiled hot paths.
#  4. Real clients go through it: udhcpc in a client namespace on a veth pair whose other end,
#     bydct0 in the root namespace with 198.19.250.1/24 (a test-made interface inside
#     198.18.0.0/15; never a real one), is the interface the host-network dhcp container serves;
#     tftp-hpa fetches iPXE from the tftp container; curl fetches the host's iPXE script from http.
#     mirrorsync syncs a small tree from an rsync daemon on the test interface, and curl fetches
#     the published file through the http container, which shares the mirror volume.
#     `bootyard image import` of a netboot tarball runs in the cli container (images volume
#     writable, as docs/deploy.md shows); http serves the imported kernel with its recorded
#     SHA-256, the host's script boots it through its profile's image, and the seeded UEFI HTTP
#     boot file /images/ipxe.efi is served.
#  5. Prometheus has every target up, sends its alerts to Alertmanager, and every dashboard
#     panel's query returns data.
#  6. Redis is killed (SIGKILL) and started again: the host record and the lease are still there,
#     every service reaches Redis again, and the client renews its address.
#  7. Everything is torn down (trap): compose project and volumes, engine, namespace, veth.
#
# COMPOSE_TEST_HA=1 (make compose-test-ha) runs the same with the ha profile: a master, a replica
# and three sentinels on the host network announcing the engine's docker0 address, every service
# given the sentinels' URL (BOOTYARD_STACK_REDIS_URL); steps 3-5 then write the host and the
# lease through the sentinels, and step 6 becomes: kill -9 the master's container, the
# sentinels promote the replica, the host record and the lease are on it, and every service
# follows without a restart (a new host added after the failover is served by http and tftp,
# dhcp writes a new lease on the promoted replica, Prometheus sees every service on Redis).
#
# It fails loudly when a service is missing. COMPOSE_TEST_PARTIAL=1 (development only) runs the
# machinery with the services that exist and still exits 1 at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PY:-$REPO/.venv/bin/python}
COMPOSE_BIN=${COMPOSE_BIN:-$REPO/.venv/bin/docker-compose}
SERVICES=(dhcp tftp http blockexport mirrorsync)
NS=bydct-client
IFACE=bydct0
SERVER=198.19.250.1
CLIENT_MAC=02:b0:07:ea:00:01
LOCK=/tmp/bootyard-bench.lock
T0=${COMPOSE_TEST_T0:-$(date +%s)}; export COMPOSE_TEST_T0=$T0

# Heavy steps hold the machine-wide benchmark lock; say how long we waited for it.
locked() {
    local asked; asked=$(date +%s)
    flock "$LOCK" bash -c 'echo "compose-test: waited $(( $(date +%s) - $0 )) s for the benchmark lock" >&2; exec "$@"' "$asked" "$@"
}
say()  { echo "compose-test [$(( $(date +%s) - T0 ))s]: $*" >&2; }
fail() { echo "compose-test: FAIL: $*" >&2; exit 1; }

# ---------------------------------------------------------------- outside the engine: steps 1-2
if [ "${1:-}" != --inside ]; then
    [ "$(id -u)" = 0 ] || fail "needs root (dockerd, network namespaces)"
    for tool in dockerd debootstrap promtool amtool udhcpc tftp curl redis-cli ip rsync; do
        command -v "$tool" >/dev/null || fail "$tool missing: run scripts/install-debian-packages.sh"
    done
    [ -x "$COMPOSE_BIN" ] || fail "$COMPOSE_BIN missing: pip install -e '.[compose]'"
    missing=()
    for svc in "${SERVICES[@]}"; do
        [ -f "services/$svc/__main__.py" ] || missing+=("$svc")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        [ "${COMPOSE_TEST_PARTIAL:-}" = 1 ] \
            || fail "services not in this tree: ${missing[*]} (python -m services.<name> must exist)"
        say "PARTIAL run without: ${missing[*]} (this run will exit 1)"
    fi

    say "$($COMPOSE_BIN version)"
    say "step 1: compose.yaml offline validation"
    tmp=$(mktemp -d /tmp/bootyard-ct.XXXXXX)
    trap 'rm -rf "$tmp"' EXIT
    # Without .env's required settings compose must refuse, naming the variable.
    : > "$tmp/empty.env"
    if $COMPOSE_BIN --project-directory "$REPO" --env-file "$tmp/empty.env" config -q 2>"$tmp/refusal"; then
        fail "compose.yaml accepted an empty .env: DHCP could start on a guessed interface"
    fi
    grep -q BOOTYARD_DHCP_INTERFACE "$tmp/refusal" || { cat "$tmp/refusal" >&2; fail "refusal does not name BOOTYARD_DHCP_INTERFACE"; }
    grep -v '^BOOTYARD_DHCP_INTERFACE=' .env.example > "$tmp/noiface.env"
    printf '%s\n' BOOTYARD_SERVER_ADDRESS=192.0.2.1 BOOTYARD_SUBNET_NETWORK=192.0.2.0/24 \
        BOOTYARD_SUBNET_RANGE=192.0.2.10-192.0.2.20 BOOTYARD_ADMIN_TOKEN=x BOOTYARD_TOKEN_SECRET=y >> "$tmp/noiface.env"
    if $COMPOSE_BIN --project-directory "$REPO" --env-file "$tmp/noiface.env" config -q 2>"$tmp/refusal"; then
        fail "compose.yaml accepted a .env without BOOTYARD_DHCP_INTERFACE"
    fi
    cp .env.example "$tmp/full.env"
    sed -i -e "s|^BOOTYARD_DHCP_INTERFACE=.*|BOOTYARD_DHCP_INTERFACE=eth9|" \
        -e "s|^BOOTYARD_SERVER_ADDRESS=.*|BOOTYARD_SERVER_ADDRESS=192.0.2.1|" \
        -e "s|^BOOTYARD_SUBNET_NETWORK=.*|BOOTYARD_SUBNET_NETWORK=192.0.2.0/24|" \
        -e "s|^BOOTYARD_SUBNET_RANGE=.*|BOOTYARD_SUBNET_RANGE=192.0.2.100-192.0.2.199|" \
        -e "s|^BOOTYARD_ADMIN_TOKEN=.*|BOOTYARD_ADMIN_TOKEN=0123|" \
        -e "s|^BOOTYARD_TOKEN_SECRET=.*|BOOTYARD_TOKEN_SECRET=4567|" "$tmp/full.env"
    for profile in "" monitoring tools ha; do
        $COMPOSE_BIN --project-directory "$REPO" --env-file "$tmp/full.env" \
            ${profile:+--profile "$profile"} config -q || fail "docker-compose config (profile '${profile:-default}')"
    done
    promtool check config deploy/prometheus/prometheus.yml >/dev/null || fail "promtool check config"
    promtool check rules deploy/prometheus/alerts.yml >/dev/null || fail "promtool check rules"
    amtool check-config deploy/alertmanager/alertmanager.yml >/dev/null || fail "amtool check-config"
    "$PY" tests/deploy/dashboard_checks.py --promtool >/dev/null && "$PY" scripts/grafana_dashboards.py --check || fail "dashboard structure or query syntax"
    say "step 1: ok (refusals, config for every profile, promtool, dashboards)"

    say "step 2: wheels for an offline image build"
    "$PY" -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > "$tmp/req.txt"
    # Markers are evaluated for the host's Python; the image runs Debian's 3.11.2, for which redis
    # also needs async-timeout (python_full_version < "3.11.3"). Wheels for both are harmless.
    echo 'async-timeout>=4.0.3' >> "$tmp/req.txt"
    # the image's native stage: mypy to compile the DHCP and TFTP hot paths (scripts/build_native.py)
    "$PY" -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['native']))" >> "$tmp/req.txt"
    "$PY" -m pip wheel -q -w deploy/wheelhouse -r "$tmp/req.txt" -c constraints.txt 2>&1 | grep -v '^WARNING: Location' >&2 || true
    ls deploy/wheelhouse/*.whl >/dev/null 2>&1 || fail "pip wheel produced no wheels"
    rm -rf "$tmp"; trap - EXIT
    status=0
    scripts/docker-engine.sh run -- "$0" --inside || status=$?
    if [ $status = 0 ] && [ ${#missing[@]} -gt 0 ]; then
        say "PARTIAL: the machinery works, but services ${missing[*]} were not tested: FAIL"
        status=1
    fi
    say "done in $(( $(date +%s) - T0 )) s, status $status"
    exit $status
fi

# ---------------------------------------------------------------- inside the engine: steps 2-7
present=()
for svc in "${SERVICES[@]}"; do [ -f "services/$svc/__main__.py" ] && present+=("$svc"); done
tmp=$(mktemp -d /tmp/bootyard-ct.XXXXXX)
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
HTTP_PORT=$(free_port); ADMIN_PORT=$(free_port); REDIS_PORT=$(free_port); PROM_PORT=$(free_port)
AM_PORT=$(free_port)
TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
cat > "$tmp/test.env" <<EOF
BOOTYARD_DHCP_INTERFACE=$IFACE
BOOTYARD_SERVER_ADDRESS=$SERVER
BOOTYARD_SUBNET_NETWORK=198.19.250.0/24
BOOTYARD_SUBNET_RANGE=198.19.250.100-198.19.250.150
BOOTYARD_ADMIN_TOKEN=$TOKEN
BOOTYARD_TOKEN_SECRET=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
BOOTYARD_HTTP_PORT=$HTTP_PORT
BOOTYARD_ADMIN_PORT=$ADMIN_PORT
BOOTYARD_REDIS_PORT=$REDIS_PORT
BOOTYARD_PROMETHEUS_PORT=$PROM_PORT
BOOTYARD_ALERTMANAGER_PORT=$AM_PORT
EOF
COMPOSE=("$COMPOSE_BIN" --project-directory "$REPO" -p bootyard-test --env-file "$tmp/test.env" --profile monitoring)
HA=${COMPOSE_TEST_HA:-}
HA_SERVICES=()
if [ -n "$HA" ]; then
    # The address the ha profile's Redis listens on and announces: docker0's, reachable from
    # the host-network services (a local address) and from the bridge ones (via their gateway).
    HA_ADDR=$(ip -4 -o addr show docker0 | awk '{print $4}' | cut -d/ -f1)
    [ -n "$HA_ADDR" ] || fail "the engine's docker0 has no IPv4 address"
    HA_URL="redis+sentinel://$HA_ADDR:26379,$HA_ADDR:26380,$HA_ADDR:26381/bootyard/0"
    printf '%s\n' "BOOTYARD_HA_ADDRESS=$HA_ADDR" BOOTYARD_HA_DOWN_AFTER_MS=2000 \
        "BOOTYARD_STACK_REDIS_URL=$HA_URL" >> "$tmp/test.env"
    COMPOSE+=(--profile ha)
    HA_SERVICES=(redis-ha-a redis-ha-b redis-ha-sentinel-1 redis-ha-sentinel-2 redis-ha-sentinel-3)
fi
dc() { "${COMPOSE[@]}" "$@"; }

teardown() {
    local status=$?
    if [ $status != 0 ]; then
        say "failed; service states and last log lines follow"
        dc ps -a >&2 || true
        dc logs --no-color --tail 40 >&2 || true
    fi
    # step 4g's rsync daemon and any connection it forked (its own session)
    [ -n "${RSYNCD_PID:-}" ] && kill -9 -- "-$RSYNCD_PID" 2>/dev/null || true
    dc down -v --remove-orphans --timeout 5 >/dev/null 2>&1 || true
    ip netns del "$NS" 2>/dev/null || true
    ip link del "$IFACE" 2>/dev/null || true
    rm -rf "$tmp"
    exit $status
}
trap teardown EXIT
trap 'exit 130' INT TERM

for port in 9101 9102 9104 3260 ${HA:+6380 6381 26379 26380 26381}; do
    if "$PY" -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $port)) != 0)"; then
        fail "port $port is taken on this host: the host-network dhcp/tftp/blockexport metrics (and blockexport's iSCSI, 3260; the ha profile's Redis, 6380-6381 and 26379-26381) need it"
    fi
done

say "step 2: base images"
scripts/build-base-images.sh
say "step 2: building the bootyard image"
locked "${COMPOSE[@]}" build http > "$tmp/build.log" 2>&1 \
    || { tail -30 "$tmp/build.log" >&2; fail "docker compose build"; }
grep -h 'for the benchmark lock' "$tmp/build.log" >&2 || true

say "step 4a: test-made interface $IFACE ($SERVER/24) and client namespace $NS"
ip netns del "$NS" 2>/dev/null || true
ip link del "$IFACE" 2>/dev/null || true
ip netns add "$NS"
ip link add "$IFACE" type veth peer name eth0 netns "$NS"
ip link set "$IFACE" address 02:b0:07:ea:00:fe
ip addr add "$SERVER/24" dev "$IFACE"
ip link set "$IFACE" up
ip netns exec "$NS" ip link set lo up
ip netns exec "$NS" ip link set eth0 address "$CLIENT_MAC"
ip netns exec "$NS" ip link set eth0 up

say "step 3: docker compose up --wait (${present[*]} + redis, setup, prometheus, alertmanager)"
up_services=(redis "${HA_SERVICES[@]}" setup "${present[@]}" prometheus alertmanager)
locked "${COMPOSE[@]}" up -d --wait --wait-timeout 120 "${up_services[@]}" >&2 \
    || fail "docker compose up --wait"
dc ps -a --format '{{.Service}} {{.State}} {{.Health}}' > "$tmp/ps"
cat "$tmp/ps" >&2
for svc in redis "${HA_SERVICES[@]}" "${present[@]}" prometheus alertmanager; do
    grep -q "^$svc running healthy$" "$tmp/ps" || fail "$svc is not running and healthy"
done
grep -q '^setup exited' "$tmp/ps" || fail "setup did not run"
dc logs --no-color setup | grep -q 'setup: created subnet lan' || fail "setup did not create the subnet"
# What the processes really hold: dhcp exactly NET_BIND_SERVICE|NET_ADMIN|NET_RAW (bits 10, 12,
# 13), tftp exactly NET_BIND_SERVICE, blockexport NET_RAW|NET_BIND_SERVICE (AoE, iSCSI's 3260),
# http none and not root.
caps() { dc exec -T "$1" sh -c 'grep "^CapEff" /proc/1/status' | awk '{print $2}'; }
if [[ " ${present[*]} " == *" dhcp "* ]]; then
    [ "$(caps dhcp)" = 0000000000003400 ] || fail "dhcp holds capabilities $(caps dhcp), not exactly NET_RAW, NET_ADMIN, NET_BIND_SERVICE"
fi
if [[ " ${present[*]} " == *" tftp "* ]]; then
    [ "$(caps tftp)" = 0000000000000400 ] || fail "tftp holds capabilities $(caps tftp), not exactly NET_BIND_SERVICE"
fi
if [[ " ${present[*]} " == *" blockexport "* ]]; then
    [ "$(caps blockexport)" = 0000000000002400 ] || fail "blockexport holds capabilities $(caps blockexport), not exactly NET_RAW, NET_BIND_SERVICE"
fi
if [[ " ${present[*]} " == *" http "* ]]; then
    [ "$(caps http)" = 0000000000000000 ] || fail "http holds capabilities $(caps http)"
    [ "$(dc exec -T http id -u)" = 10001 ] || fail "http does not run as the bootyard user"
fi
if [[ " ${present[*]} " == *" mirrorsync "* ]]; then
    [ "$(caps mirrorsync)" = 0000000000000000 ] || fail "mirrorsync holds capabilities $(caps mirrorsync)"
    [ "$(dc exec -T mirrorsync id -u)" = 10001 ] || fail "mirrorsync does not run as the bootyard user"
fi
# the image's native stage compiled the DHCP packet path and the TFTP per-block path (pump
# included) and the services load that build, not the pure-Python fallback
for svc in dhcp tftp; do
    if [[ " ${present[*]} " == *" $svc "* ]]; then
        native=$(dc exec -T "$svc" python -c "import services.$svc as p; print(p.NATIVE, p.NATIVE_REASON)")
        [ "${native%% *}" = True ] || fail "$svc in the image runs its pure-Python path: $native"
    fi
done
say "step 3: ok: every service healthy; dhcp, tftp and http hold only their capabilities; both hot paths compiled"

if [ -n "$HA" ]; then
    # the master the sentinels name now (what the services write to)
    master_port() { redis-cli -h "$HA_ADDR" -p 26379 SENTINEL get-master-addr-by-name bootyard | tail -1; }
    rcli() { redis-cli -h "$HA_ADDR" -p "$(master_port)" "$@"; }
    [ "$(master_port)" = 6380 ] || fail "the sentinels do not name redis-ha-a (6380) as the master"
    [ "$(redis-cli -h "$HA_ADDR" -p 6381 ROLE | head -1)" = slave ] || fail "redis-ha-b is not a replica"
else
    rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
fi
[ "$(rcli CONFIG GET appendonly | tail -1)" = yes ] || fail "redis runs without appendonly"
case "$(rcli CONFIG GET notify-keyspace-events | tail -1)" in
    *K*) ;; *) fail "redis has no keyspace notifications";;
esac

say "step 4b: inventory through the CLI in the image"
bootyard() { dc run --rm -T --no-deps setup bootyard "$@"; }
bootyard profile add ct-live --kernel vmlinuz --initrd initrd.img --cmdline "console=ttyS0" >&2
bootyard host add "$CLIENT_MAC" --hostname ct-client --profile ct-live >&2
sleep 2  # keyspace notification reaches every service's cache well within this

partial_status=0
if [[ " ${present[*]} " == *" dhcp "* ]]; then
    say "step 4c: udhcpc in $NS through the host-network dhcp container"
    cat > "$tmp/udhcpc.sh" <<EOF
#!/bin/sh
[ "\$1" = bound ] || [ "\$1" = renew ] || exit 0
{ echo "ip=\$ip"; echo "siaddr=\$siaddr"; echo "boot_file=\$boot_file"; echo "bootfile=\$bootfile"; echo "serverid=\$serverid"; } > $tmp/lease.\$1
EOF
    chmod +x "$tmp/udhcpc.sh"
    # As a BIOS PXE ROM asks: vendor class PXEClient, client architecture (option 93) 0.
    pxe_udhcpc() {
        timeout 60 ip netns exec "$NS" udhcpc -i eth0 -f -q -n -t 6 -T 3 -s "$tmp/udhcpc.sh" \
            -V PXEClient:Arch:00000:UNDI:002001 -x 0x5d:0000 -O bootfile >&2
    }
    pxe_udhcpc || fail "udhcpc got no lease from the dhcp container"
    cat "$tmp/lease.bound" >&2
    CLIENT_IP=$(sed -n 's/^ip=//p' "$tmp/lease.bound")
    [ -n "$CLIENT_IP" ] || fail "udhcpc reported no address"
    BOOT_FILE=$(sed -n 's/^boot_file=//p' "$tmp/lease.bound")
    [ -n "$BOOT_FILE" ] || BOOT_FILE=$(sed -n 's/^bootfile=//p' "$tmp/lease.bound")
    [ "$BOOT_FILE" = undionly.kpxe ] || fail "DHCP offered boot file '$BOOT_FILE' to a BIOS PXE client, not undionly.kpxe"
    grep -qx "siaddr=$SERVER" "$tmp/lease.bound" || fail "DHCP's next-server is not $SERVER"
    ip netns exec "$NS" ip addr add "$CLIENT_IP/24" dev eth0
    rcli HGETALL "bootyard:lease:$CLIENT_IP" > "$tmp/lease.redis"
    grep -qx bound "$tmp/lease.redis" || { cat "$tmp/lease.redis" >&2; fail "no bound lease for $CLIENT_IP in Redis"; }
    grep -qx "$CLIENT_MAC" "$tmp/lease.redis" || fail "lease $CLIENT_IP is not for $CLIENT_MAC"
else
    CLIENT_IP=198.19.250.99
    BOOT_FILE=undionly.kpxe
    ip netns exec "$NS" ip addr add "$CLIENT_IP/24" dev eth0
    partial_status=1
fi

if [[ " ${present[*]} " == *" tftp "* ]]; then
    say "step 4d: tftp-hpa fetch of the boot file DHCP named ($BOOT_FILE) from $NS"
    (cd "$tmp" && timeout 60 ip netns exec "$NS" tftp -m binary "$SERVER" -c get "$BOOT_FILE" fetched.bin) \
        || fail "tftp fetch of $BOOT_FILE failed"
    dc exec -T tftp cat "/var/lib/bootyard/tftp/$BOOT_FILE" > "$tmp/expected.bin"
    cmp "$tmp/fetched.bin" "$tmp/expected.bin" || fail "tftp served different bytes"
    cmp "$tmp/fetched.bin" /usr/lib/ipxe/undionly.kpxe \
        || say "note: the image's iPXE differs from this host's /usr/lib/ipxe/undionly.kpxe (other package version)"
    say "step 4d: ok ($(stat -c %s "$tmp/fetched.bin") bytes, identical)"
fi

if [[ " ${present[*]} " == *" http "* ]]; then
    say "step 4e: curl of the host's iPXE script from $NS"
    timeout 30 ip netns exec "$NS" curl -fsS "http://$SERVER:$HTTP_PORT/boot/ipxe?mac=$CLIENT_MAC" > "$tmp/script.ipxe" \
        || fail "HTTP boot script fetch failed"
    head -1 "$tmp/script.ipxe" | grep -q '^#!ipxe' || { cat "$tmp/script.ipxe" >&2; fail "not an iPXE script"; }
    grep -q vmlinuz "$tmp/script.ipxe" || { cat "$tmp/script.ipxe" >&2; fail "the script does not boot the profile's kernel"; }
    say "step 4e: ok"

    say "step 4h: bootyard image import in the cli container; http serves the image"
    mkdir -p "$tmp/src/netboot/debian-installer/amd64"
    head -c 300000 /dev/urandom > "$tmp/src/netboot/debian-installer/amd64/linux"
    head -c 700000 /dev/urandom > "$tmp/src/netboot/debian-installer/amd64/initrd.gz"
    tar -C "$tmp/src/netboot" -czf "$tmp/src/netboot.tar.gz" .
    chmod o+x "$tmp"; chmod -R o+rX "$tmp/src"  # the cli container runs as uid 10001
    dc run --rm -T -v "$tmp/src:/src:ro" cli image import ct-netboot /src/netboot.tar.gz >&2 \
        || fail "bootyard image import in the cli container"
    want=$(sha256sum < "$tmp/src/netboot/debian-installer/amd64/linux" | cut -d' ' -f1)
    rcli HGET bootyard:image:ct-netboot sha256 | grep -q "ct-netboot/linux=$want" \
        || fail "the image record lacks the kernel's SHA-256"
    got=$(timeout 30 ip netns exec "$NS" curl -fsS "http://$SERVER:$HTTP_PORT/images/ct-netboot/linux" | sha256sum | cut -d' ' -f1)
    [ "$got" = "$want" ] || fail "http served a different kernel than the one imported"
    bootyard profile add ct-image --image ct-netboot --install none >&2
    bootyard host set "$CLIENT_MAC" --profile ct-image >&2
    sleep 2
    timeout 30 ip netns exec "$NS" curl -fsS "http://$SERVER:$HTTP_PORT/boot/ipxe?mac=$CLIENT_MAC" > "$tmp/script2.ipxe" \
        || fail "HTTP boot script fetch failed"
    grep -q "/images/ct-netboot/linux" "$tmp/script2.ipxe" \
        || { cat "$tmp/script2.ipxe" >&2; fail "the script does not boot the image's kernel"; }
    timeout 30 ip netns exec "$NS" curl -fsS "http://$SERVER:$HTTP_PORT/images/ipxe.efi" -o "$tmp/ipxe.efi" \
        || fail "the UEFI HTTP boot file /images/ipxe.efi is not served"
    [ "$(head -c 2 "$tmp/ipxe.efi")" = MZ ] || fail "/images/ipxe.efi is not an EFI program"
    say "step 4h: ok"
fi

if [[ " ${present[*]} " == *" blockexport "* ]]; then
    say "step 4f: an AoE read from $NS through the host-network blockexport container"
    dc exec -T blockexport python -c "open('/var/lib/bootyard/exports/compose-test.img', 'wb').write(bytes(range(256)) * 2 * 4096)" \
        || fail "could not write the test export's backing file in the blockexport container"
    rcli HSET bootyard:export:compose-test kind aoe backing /var/lib/bootyard/exports/compose-test.img \
        aoe_shelf 65 aoe_slot 1 >/dev/null
    want=$("$PY" -c "import hashlib; print(hashlib.md5(bytes(range(256)) * 2 * 4).hexdigest())")
    aoe_out=$(ip netns exec "$NS" "$PY" scripts/aoe-probe.py --interface eth0 --target 65.1 \
        --lba 0 --count 4 --timeout 20) || fail "aoe-probe read no block from the blockexport container"
    grep -q "md5 $want " <<<"$aoe_out" || fail "aoe-probe read other bytes: $aoe_out"
    say "step 4f: ok ($(head -1 <<<"$aoe_out"))"

    say "step 4f: an iSCSI login and read from $NS through the blockexport container"
    rcli HSET bootyard:export:compose-iscsi kind iscsi backing /var/lib/bootyard/exports/compose-test.img \
        iqn iqn.2026-11.org.bootyard:compose-test readonly yes >/dev/null
    listing=""
    for _ in $(seq 1 20); do  # the export is served within a second of the write
        listing=$(timeout 20 ip netns exec "$NS" iscsi-ls -s "iscsi://$SERVER:3260" 2>&1) || true
        grep -q "Target:iqn.2026-11.org.bootyard:compose-test" <<<"$listing" && break
        sleep 0.5
    done
    grep -q "Target:iqn.2026-11.org.bootyard:compose-test" <<<"$listing" \
        || fail "iscsi-ls from $NS did not list the test target: $listing"
    iscsi_out=$(ip netns exec "$NS" "$PY" scripts/iscsi-probe.py --portal "$SERVER:3260" \
        --target iqn.2026-11.org.bootyard:compose-test --lba 0 --count 4) \
        || fail "iscsi-probe read no block from the blockexport container"
    grep -q "md5 $want " <<<"$iscsi_out" || fail "iscsi-probe read other bytes: $iscsi_out"
    say "step 4f: ok (iSCSI: $(head -1 <<<"$iscsi_out"))"
fi

if [[ " ${present[*]} " == *" mirrorsync "* ]]; then
    say "step 4g: mirrorsync syncs from an rsync daemon on $SERVER; http serves the published tree"
    mkdir -p "$tmp/upstream/ct/sub"
    head -c 300000 /dev/urandom > "$tmp/upstream/ct/sub/blob.bin"
    echo "bootyard compose-test" > "$tmp/upstream/ct/hello.txt"
    chmod -R a+rX "$tmp/upstream"
    RSYNC_PORT=$(free_port)
    printf 'use chroot = false\ntimeout = 60\n[up]\n    path = %s\n    read only = true\n    uid = nobody\n' \
        "$tmp/upstream" > "$tmp/rsyncd.conf"
    setsid rsync --daemon --no-detach --config="$tmp/rsyncd.conf" --address="$SERVER" --port="$RSYNC_PORT" &
    RSYNCD_PID=$!
    for _ in $(seq 50); do
        rsync --list-only --contimeout=2 "rsync://$SERVER:$RSYNC_PORT/up/" >/dev/null 2>&1 && break
        sleep 0.2
    done
    bootyard mirror add ct --source "rsync://$SERVER:$RSYNC_PORT/up/ct/" --path ct >&2
    bootyard mirror sync ct >&2
    for _ in $(seq 120); do
        [ "$(rcli HGET bootyard:mirrorsync:status:ct last_result)" = published ] && break
        sleep 0.5
    done
    bootyard mirror status >&2
    [ "$(rcli HGET bootyard:mirrorsync:status:ct last_result)" = published ] \
        || fail "mirror ct was not published: $(rcli HGET bootyard:mirrorsync:status:ct last_error)"
    timeout 30 ip netns exec "$NS" curl -fsS "http://$SERVER:$HTTP_PORT/mirror/ct/sub/blob.bin" > "$tmp/blob.bin" \
        || fail "HTTP fetch of the published mirror failed"
    cmp "$tmp/blob.bin" "$tmp/upstream/ct/sub/blob.bin" || fail "http served other bytes than the upstream's"
    timeout 30 ip netns exec "$NS" curl -fsS "http://$SERVER:$HTTP_PORT/mirror/ct/project/trace/bootyard" \
        | grep -q "^Upstream-mirror: $SERVER:$RSYNC_PORT" || fail "no trace file in the published mirror"
    say "step 4g: ok"
fi

say "step 5: Prometheus targets and every dashboard query"
PROM=http://127.0.0.1:$PROM_PORT
jobs=prometheus
for svc in "${present[@]}"; do jobs="$jobs,bootyard-$svc"; done
if "$PY" tests/deploy/dashboard_checks.py --prometheus "$PROM" --wait-targets 90 --expect-jobs "$jobs" >&2; then
    for _ in $(seq 30); do  # Prometheus lists its Alertmanagers a few seconds after its start
        curl -fsS "$PROM/api/v1/alertmanagers" | grep -q '"url":"http://alertmanager:9093/api/v2/alerts"' && break
        sleep 1
    done
    curl -fsS "$PROM/api/v1/alertmanagers" | grep -q '"url":"http://alertmanager:9093/api/v2/alerts"' \
        || fail "Prometheus does not send its alerts to the alertmanager service"
    curl -fsS "http://127.0.0.1:$AM_PORT/api/v2/status" | grep -q 'receiver: operator' \
        || fail "Alertmanager has not loaded deploy/alertmanager/alertmanager.yml"
    say "step 5: ok"
elif [ ${#present[@]} -lt ${#SERVICES[@]} ]; then
    say "step 5: PARTIAL: queries of missing services return nothing (expected without them)"
    partial_status=1
else
    fail "Prometheus targets or dashboard queries"
fi

if [ -n "$HA" ]; then
    say "step 6 (ha): kill -9 the master's container; the sentinels promote the replica"
    rcli HGETALL "bootyard:host:$CLIENT_MAC" > "$tmp/host.before"
    [ -s "$tmp/host.before" ] || fail "no host record before the failover"
    rcli HGETALL "bootyard:lease:$CLIENT_IP" > "$tmp/lease.before"
    # what the CLI wrote is on the replica before the kill (DHCP's leases wait for it themselves)
    [ "$(rcli WAIT 1 5000)" -ge 1 ] || fail "the replica did not acknowledge the writes"
    dc kill -s SIGKILL redis-ha-a >&2
    killed=$(date +%s)
    for _ in $(seq 120); do [ "$(master_port)" = 6381 ] && break; sleep 0.5; done
    [ "$(master_port)" = 6381 ] || fail "the sentinels did not promote redis-ha-b within 60 s"
    say "step 6 (ha): redis-ha-b promoted $(( $(date +%s) - killed )) s after the kill"
    [ "$(rcli ROLE | head -1)" = master ] || fail "redis-ha-b does not say it is the master"
    rcli HGETALL "bootyard:host:$CLIENT_MAC" > "$tmp/host.after"
    cmp "$tmp/host.before" "$tmp/host.after" || fail "the host record is not on the promoted replica"
    rcli HGETALL "bootyard:lease:$CLIENT_IP" > "$tmp/lease.after"
    cmp "$tmp/lease.before" "$tmp/lease.after" || fail "the lease is not on the promoted replica"
    # every service follows, without a restart: a host added now (CLI through the sentinels) is
    # served by http and tftp, dhcp writes a lease on the new master
    bootyard host add 02:b0:07:ea:00:02 --hostname ct-after --profile ct-live >&2 \
        || fail "the CLI could not write through the sentinels after the failover"
    sleep 2
    if [[ " ${present[*]} " == *" http "* ]]; then
        timeout 30 ip netns exec "$NS" curl -fsS "http://$SERVER:$HTTP_PORT/boot/ipxe?mac=02:b0:07:ea:00:02" \
            > "$tmp/after.ipxe" || fail "http did not serve the host added after the failover"
        grep -q vmlinuz "$tmp/after.ipxe" || { cat "$tmp/after.ipxe" >&2; fail "http does not see the new host's profile"; }
    fi
    if [[ " ${present[*]} " == *" tftp "* ]]; then
        (cd "$tmp" && timeout 60 ip netns exec "$NS" tftp -m binary "$SERVER" -c get "$BOOT_FILE" after.bin) \
            || fail "tftp fetch after the failover failed"
        cmp "$tmp/after.bin" "$tmp/expected.bin" || fail "tftp served different bytes after the failover"
    fi
    if [[ " ${present[*]} " == *" dhcp "* ]]; then
        expires=$(rcli HGET "bootyard:lease:$CLIENT_IP" expires)
        sleep 1  # the renewal's expiry is a later second
        pxe_udhcpc || fail "no lease from dhcp after the failover"
        grep -qx "ip=$CLIENT_IP" "$tmp/lease.bound" || fail "the client got a different address after the failover"
        rcli HGET "bootyard:lease:$CLIENT_IP" mac | grep -qx "$CLIENT_MAC" \
            || fail "the lease on the promoted replica is not the client's"
        [ "$(rcli HGET "bootyard:lease:$CLIENT_IP" expires)" -gt "$expires" ] \
            || fail "dhcp did not write the renewal on the promoted replica"
    fi
    "$PY" tests/deploy/dashboard_checks.py --prometheus "$PROM" --wait-redis-up 90 >&2 \
        || fail "services did not reach Redis after the failover"
    dc ps --format '{{.Service}} {{.State}} {{.Health}}' | grep -v 'running healthy' \
        | grep -v -e '^setup' -e '^redis-ha-a' && fail "a service is unhealthy after the failover"
    say "step 6 (ha): ok (records on the promoted replica; cli, http, tftp, dhcp followed it)"
    exit $partial_status
fi

say "step 6: kill -9 redis, start it again: nothing acknowledged is lost"
sleep 2  # appendfsync everysec: what was acknowledged more than a second ago is on disk
rcli HGETALL "bootyard:host:$CLIENT_MAC" > "$tmp/host.before"
[ -s "$tmp/host.before" ] || fail "no host record before the restart"
rcli HGETALL "bootyard:lease:$CLIENT_IP" > "$tmp/lease.before"
dc kill -s SIGKILL redis >&2
dc start redis >&2
dc up -d --wait --wait-timeout 60 redis >&2 || fail "redis did not come back healthy"
rcli HGETALL "bootyard:host:$CLIENT_MAC" > "$tmp/host.after"
cmp "$tmp/host.before" "$tmp/host.after" || fail "the host record changed across the Redis restart"
rcli HGETALL "bootyard:lease:$CLIENT_IP" > "$tmp/lease.after"
cmp "$tmp/lease.before" "$tmp/lease.after" || fail "the lease changed across the Redis restart"
"$PY" tests/deploy/dashboard_checks.py --prometheus "$PROM" --wait-redis-up 90 >&2 \
    || fail "services did not reach Redis again"
if [[ " ${present[*]} " == *" dhcp "* ]]; then
    pxe_udhcpc || fail "no lease after the Redis restart"
    grep -qx "ip=$CLIENT_IP" "$tmp/lease.bound" || fail "the client got a different address after the restart"
fi
dc ps --format '{{.Service}} {{.State}} {{.Health}}' | grep -v 'running healthy' | grep -v '^setup' \
    && fail "a service is unhealthy after the Redis restart"
say "step 6: ok (host record and lease identical; services back on Redis)"

exit $partial_status
