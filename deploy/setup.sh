#!/bin/sh
# compose.yaml's one-shot `setup` service: create the subnet DHCP serves from .env, once.
# An existing subnet of that name is left as it is (edit it with `bootyard subnet set`).
set -eu
name=$SETUP_SUBNET_NAME
if bootyard subnet show "$name" >/dev/null 2>&1; then
    echo "setup: subnet $name exists; leaving it as it is"
    exit 0
fi
set -- subnet add "$name" --network "$SETUP_SUBNET_NETWORK" --ranges "$SETUP_SUBNET_RANGE" \
    --next-server "$SETUP_SERVER_ADDRESS"
[ -n "${SETUP_SUBNET_ROUTER:-}" ] && set -- "$@" --router "$SETUP_SUBNET_ROUTER"
bootyard "$@"
echo "setup: created subnet $name ($SETUP_SUBNET_NETWORK, pool $SETUP_SUBNET_RANGE)"
