-- wrk script: POST one RFC 7846 (JSON) FIND per call for a peer registered beforehand.
--
--   PPSP_PEER=... PPSP_SWARM=... wrk -t1 -c64 -d10s --latency -s ppsp-json.lua URL
--
-- The peer must already be registered in the swarm (a JSON CONNECT with a JOIN action;
-- scripts/bench-compare.sh sends it with curl). Every request gets its own transaction_id,
-- so none is answered from the tracker's retransmission cache. PPSP_CLOSE=1 sends
-- Connection: close (a new connection per request); PPSP_PEER_NUM sets peer_count
-- (default 20).

local peer = assert(os.getenv("PPSP_PEER"), "set PPSP_PEER")
local swarm = assert(os.getenv("PPSP_SWARM"), "set PPSP_SWARM")
local peer_num = os.getenv("PPSP_PEER_NUM") or "20"

local threads = 0
function setup(thread)
  -- Threads count their IDs in disjoint residues so two never send the same one.
  thread:set("lane", threads)
  threads = threads + 1
end

local headers = { ["Content-Type"] = "application/ppsp-tracker+json" }
if os.getenv("PPSP_CLOSE") == "1" then
  headers["Connection"] = "close"
end
local head = '{"PPSPTrackerProtocol":{"version":1,"request_type":"FIND","peer_id":"' .. peer
  .. '","find":{"swarm_id":"' .. swarm .. '","peer_num":{"peer_count":' .. peer_num
  .. '}},"transaction_id":"'

local counter = 0
function request()
  counter = counter + 1
  local id = 1000000 + counter * 64 + (lane or 0)
  return wrk.format("POST", nil, headers, head .. id .. '"}}')
end
