#!/bin/sh
# Makes the node's config from the template, then runs the node in the
# foreground (exec: SIGTERM reaches it, and it drains). Its id and address
# come from the environment (a StatefulSet pod's name and IP); KVORUM_SEEDS
# lists peers by DNS name (the headless Service's pod names), resolved here
# to addresses, since a node's seeds are addresses: a name that does not
# resolve yet (that pod is not up) is left out. KVORUM_TEMPLATE,
# KVORUM_CONFIG and KVORUM_BIN override the paths (node/tests/package.rs).
set -eu
template="${KVORUM_TEMPLATE:-/etc/kvorum/kvorum.toml.in}"
config="${KVORUM_CONFIG:-/var/lib/kvorum/kvorum.toml}"
bin="${KVORUM_BIN:-/usr/bin/kvorum}"
: "${KVORUM_ID:?set KVORUM_ID (the pod name)}"
: "${KVORUM_ADDR:?set KVORUM_ADDR (the pod IP)}"
seeds=""
for name in $(echo "${KVORUM_SEEDS:-}" | tr ',' ' '); do
    ip=$(getent ahostsv4 "$name" 2>/dev/null | awk 'NR == 1 { print $1 }')
    if [ -n "$ip" ] && [ "$ip" != "$KVORUM_ADDR" ]; then
        seeds="${seeds:+$seeds, }\"$ip:7401\""
    fi
done
sed -e "s/@ID@/${KVORUM_ID}/g" -e "s/@ADDR@/${KVORUM_ADDR}/g" \
    -e "s/@SEEDS@/${seeds}/g" "$template" > "$config"
exec "$bin" start --config "$config"
