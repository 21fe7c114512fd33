#!/usr/bin/env bash
# Local stand-ins for the images compose.yaml would pull from a registry, for machines that reach
# no registry (CI, this lab). Run against a private engine (scripts/docker-engine.sh sets DOCKER_HOST).
#
#   debian:bookworm-slim       debootstrap --variant=minbase bookworm from the mirror apt uses: the
#                              same recipe Debian's official slim image is made with. The rootfs is
#                              cached as var/cache/compose/bookworm-minbase.tar (delete it to refresh).
#   redis:7.2-bookworm         Debian's redis-server (7.0) on that base, redis-server on PATH, /data
#   prom/prometheus:v2.42.0    Debian's prometheus (2.42.0, the same version), /bin/prometheus entrypoint
#   prom/alertmanager:v0.25.0  Debian's prometheus-alertmanager (0.25.0, the same version)
#
# Grafana has no Debian package: its dashboards are checked by structure and by evaluating every
# panel's query against the Prometheus stand-in (scripts/compose_test.sh), not by a running Grafana.
# The image names are the ones compose.yaml uses (overridable in .env; see docs/deploy.md).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${DOCKER_HOST:?run me under scripts/docker-engine.sh run -- (or point DOCKER_HOST at an engine)}"
cache=var/cache/compose
mkdir -p "$cache"
lock=/tmp/bootyard-bench.lock
log() { echo "build-base-images: $*" >&2; }

# The mirror apt is configured with (deb822 .sources first, then one-line sources.list).
mirror() {
    local uri
    uri=$(awk '/^URIs:/ {print $2}' /etc/apt/sources.list.d/*.sources 2>/dev/null \
          | grep -m1 -E '/debian/?$' || true)
    if [ -z "$uri" ]; then
        uri=$(awk '$1 == "deb" && $3 ~ /^bookworm/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

base=debian:bookworm-slim
if ! have_image "$base"; then
    tarball="$cache/bookworm-minbase.tar"
    if [ ! -s "$tarball" ]; then
        command -v debootstrap >/dev/null || { log "debootstrap missing: run scripts/install-debian-packages.sh"; exit 1; }
        url=$(mirror)
        rootfs=$(mktemp -d /tmp/bootyard-rootfs.XXXXXX)
        trap 'rm -rf "$rootfs"' EXIT
        log "debootstrap --variant=minbase bookworm from $url (once; cached in $tarball)"
        flock "$lock" debootstrap --variant=minbase bookworm "$rootfs" "$url" >"$cache/debootstrap.log" 2>&1 \
            || { tail -20 "$cache/debootstrap.log" >&2; log "debootstrap failed (log: $cache/debootstrap.log)"; exit 1; }
        # As in Debian's official images: the release, its updates and security, and no caches.
        cat > "$rootfs/etc/apt/sources.list" <<EOF
deb $url bookworm main
deb $url bookworm-updates main
deb ${url%/debian}/debian-security bookworm-security main
EOF
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
        tar -C "$rootfs" --numeric-owner -cf "$tarball.tmp" .
        mv "$tarball.tmp" "$tarball"
        rm -rf "$rootfs"; trap - EXIT
    fi
    log "importing $tarball as $base"
    docker import -c 'CMD ["bash"]' "$tarball" "$base" >/dev/null
fi

# A stand-in is built once (apt inside the build, host network) and saved under var/cache/compose
# keyed by its Dockerfile and the base tarball, so later runs only `docker load` it.
build_standin() {  # image, then the Dockerfile on stdin
    local image=$1
    if have_image "$image"; then return; fi
    local ctx; ctx=$(mktemp -d /tmp/bootyard-standin.XXXXXX)
    cat > "$ctx/Dockerfile"
    local key; key=$( (cat "$ctx/Dockerfile"; stat -c %Y "$cache/bookworm-minbase.tar" 2>/dev/null) | sha256sum | cut -c1-16)
    local saved="$cache/standin-${image//[\/:]/_}-$key.tar"
    if [ -s "$saved" ]; then
        log "loading stand-in $image from $saved"
        docker load -q -i "$saved" >/dev/null && { rm -rf "$ctx"; return; }
    fi
    log "building stand-in $image"
    flock "$lock" docker build --network host -q -t "$image" "$ctx" >/dev/null \
        || { rm -rf "$ctx"; log "building $image failed"; exit 1; }
    rm -rf "$ctx"
    rm -f "$cache/standin-${image//[\/:]/_}-"*.tar
    docker save -o "$saved.tmp" "$image" && mv "$saved.tmp" "$saved"
}

build_standin "${BOOTYARD_REDIS_IMAGE:-redis:7.2-bookworm}" <<'EOF'
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown redis:redis /data
WORKDIR /data
USER redis
EXPOSE 6379
CMD ["redis-server", "--protected-mode", "no"]
EOF

build_standin "${BOOTYARD_PROMETHEUS_IMAGE:-prom/prometheus:v2.42.0}" <<'EOF'
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends prometheus wget \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /prometheus /etc/prometheus && chown nobody:nogroup /prometheus
USER nobody
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
EOF
build_standin "${BOOTYARD_ALERTMANAGER_IMAGE:-prom/alertmanager:v0.25.0}" <<'EOF'
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends prometheus-alertmanager wget \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /alertmanager /etc/alertmanager && chown nobody:nogroup /alertmanager
USER nobody
WORKDIR /alertmanager
EXPOSE 9093
ENTRYPOINT ["/usr/bin/prometheus-alertmanager"]
CMD ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]
EOF
log "images ready: $(docker images --format '{{.Repository}}:{{.Tag}}' | tr '\n' ' ')"
