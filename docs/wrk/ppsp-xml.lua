-- wrk script: POST one XML tracker request per call, for one session made beforehand.
--
--   PPSP_PEER=... PPSP_TOKEN=... PPSP_METHOD=KEEPALIVE wrk -t2 -c32 -d10s -s ppsp-xml.lua URL
--   PPSP_PEER=... PPSP_TOKEN=... PPSP_METHOD=FIND PPSP_SWARM=... wrk ... -s ppsp-xml.lua URL
--
-- Every request gets its own TransactionID. A fixed body would repeat the same ID, and the
-- tracker would answer from its retransmission cache instead of doing the work.
-- See docs/benchmarks.md ("wrk") for how the session and the swarm are set up.

local method = os.getenv("PPSP_METHOD") or "KEEPALIVE"
local peer = assert(os.getenv("PPSP_PEER"), "set PPSP_PEER")
local token = assert(os.getenv("PPSP_TOKEN"), "set PPSP_TOKEN")
local swarm = os.getenv("PPSP_SWARM") or "wrk-swarm"

local threads = 0
function setup(thread)
  -- Threads count their IDs in disjoint residues so two never send the same one.
  thread:set("lane", threads)
  threads = threads + 1
end

local counter = 0
local headers = { ["Content-Type"] = "application/xml" }
-- PPSP_CLOSE=1 asks for a new connection per request (wrk's -H is not applied to requests
-- built with wrk.format and a header table of their own, so it is set here).
if os.getenv("PPSP_CLOSE") == "1" then
  headers["Connection"] = "close"
end
local head = '<?xml version="1.0" encoding="UTF-8"?><PPSPTrackerProtocol version="1.0"><Method>'
  .. method .. '</Method><PeerID>' .. peer .. '</PeerID><AuthToken>' .. token .. '</AuthToken>'
if method == "FIND" then
  head = head .. '<SwarmID>' .. swarm .. '</SwarmID><PeerNum>20</PeerNum>'
end

function request()
  counter = counter + 1
  local id = 1000000 + counter * 64 + (lane or 0)
  return wrk.format("POST", nil, headers,
    head .. '<TransactionID>' .. id .. '</TransactionID></PPSPTrackerProtocol>')
end
