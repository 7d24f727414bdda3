-- wrk script: GET BitTorrent HTTP announce requests, for comparing request handling
-- capacity with other trackers (opentracker, aquatic_http) on the same machine.
--
--   wrk -t2 -c64 -d10s --latency -s bt-announce.lua http://127.0.0.1:PORT
--
-- One torrent (a fixed info_hash); every request carries a new peer_id and port, so the
-- swarm fills up as the run goes and each answer holds up to numwant=20 compact peers.
-- Peers announce as leechers (left=1): some trackers answer a seeder with leechers only,
-- which would leave the peer list empty here. BT_PATH overrides the announce path
-- (default /announce).

local path = os.getenv("BT_PATH") or "/announce"
local info_hash = "%01%23%45%67%89%ab%cd%ef%01%23%45%67%89%ab%cd%ef%01%23%45%67"

local threads = 0
function setup(thread)
  -- Threads number their peers in disjoint lanes so two never send the same peer_id.
  thread:set("lane", threads)
  threads = threads + 1
end

local counter = 0
function request()
  counter = counter + 1
  -- Cycle through 10,000 peers per thread: the swarm stays bounded and re-announces
  -- update existing entries, as real clients do.
  local n = counter % 10000
  local peer_id = string.format("-WK0001-%02d%010d", lane or 0, n)
  local port = 1024 + n
  return wrk.format("GET", path .. "?info_hash=" .. info_hash .. "&peer_id=" .. peer_id
    .. "&port=" .. port .. "&uploaded=0&downloaded=0&left=1&compact=1&numwant=20")
end
