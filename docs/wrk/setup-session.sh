#!/usr/bin/env bash
# Prepares a tracker for docs/wrk/ppsp-xml.lua: CONNECTs and JOINs N peers (LEECH) to one
# swarm over the XML protocol with curl, then prints the PeerID and AuthToken of the last
# one as shell assignments, for `eval`. Usage: setup-session.sh URL [N] [SWARM]
set -euo pipefail
url=${1:?tracker URL}
count=${2:-21}
swarm=${3:-wrk-swarm}
post() {
    curl -sf -H 'Content-Type: application/xml' --data-binary "$1" "$url"
}
head='<?xml version="1.0" encoding="UTF-8"?><PPSPTrackerProtocol version="1.0">'
for i in $(seq 1 "$count"); do
    peer="wrk-peer-$$-$i"
    answer=$(post "$head<Method>CONNECT</Method><PeerID>$peer</PeerID><Auth mechanism=\"ANONYMOUS\"/><TransactionID>1</TransactionID><PeerAddresses><PeerAddress ip=\"127.0.0.1\" port=\"$((30000 + i))\" priority=\"1\" type=\"HOST\"/></PeerAddresses></PPSPTrackerProtocol>")
    token=$(printf '%s' "$answer" | sed -n 's:.*<AuthToken>\([^<]*\)</AuthToken>.*:\1:p')
    [ -n "$token" ] || { echo "CONNECT of $peer failed: $answer" >&2; exit 1; }
    post "$head<Method>JOIN</Method><PeerID>$peer</PeerID><AuthToken>$token</AuthToken><SwarmID>$swarm</SwarmID><PeerMode>LEECH</PeerMode><ExpireTime>0</ExpireTime><TransactionID>2</TransactionID></PPSPTrackerProtocol>" >/dev/null
done
echo "export PPSP_PEER=$peer PPSP_TOKEN=$token PPSP_SWARM=$swarm"
