-- wrk script: GET BitTorrent HTTP announce requests, for comparing request handling
-- capacity with other trackers (opentracker, aquatic_http) on the same machine.
--
--   wrk -t2 -c64 -d10s --latency -s bt-announce.lua http://127.0.0.1:PORT
--
-- Default: one torrent (a fixed info_hash); every request carries a new peer_id and port
-- (10,000 per thread, then repeated), so the swarm fills up as the run goes and each answer
-- holds up to numwant=20 compact peers. Peers announce as leechers (left=1): some trackers
-- answer a seeder with leechers only, which would leave the peer list empty here.
--
-- Environment:
--   BT_PATH      announce path (default /announce)
--   BT_TORRENTS  torrents the peers spread over (default 1); peer n announces torrent
--                n mod BT_TORRENTS, whose info_hash is 16 fixed bytes then n mod
--                BT_TORRENTS as 4 big-endian bytes
--   BT_PEERS     peers per thread, announced in turn (default 10000)
--   BT_NUMWANT   peers asked for (default 20)
--   BT_CLOSE=1   send Connection: close, so every request opens a new connection
-- scripts/bench-compare.sh uses BT_TORRENTS=200 BT_PEERS=20000 BT_NUMWANT=50 with one
-- thread: the same population of 20,000 peers in 200 swarms as the PPSP trackers get.

local path = os.getenv("BT_PATH") or "/announce"
local torrents = tonumber(os.getenv("BT_TORRENTS") or "1")
local peers = tonumber(os.getenv("BT_PEERS") or "10000")
local numwant = os.getenv("BT_NUMWANT") or "20"
local close = os.getenv("BT_CLOSE") == "1"
local hash_head = "%01%23%45%67%89%ab%cd%ef%01%23%45%67"

local threads = 0
function setup(thread)
  -- Threads number their peers in disjoint lanes so two never send the same peer_id.
  thread:set("lane", threads)
  threads = threads + 1
end

local function info_hash(torrent)
  if torrents == 1 then
    return hash_head .. "%89%ab%cd%ef%01%23%45%67"
  end
  return hash_head .. string.format("%%00%%00%%%02x%%%02x", math.floor(torrent / 256) % 256,
    torrent % 256) .. "%89%ab%cd%ef"
end

local headers = {}
if close then
  headers["Connection"] = "close"
end

local counter = 0
function request()
  counter = counter + 1
  -- Re-announces of the same peers update existing entries, as real clients do, so the
  -- swarms stay at their size.
  local n = counter % peers
  local peer_id = string.format("-WK0001-%02d%010d", lane or 0, n)
  local port = 1024 + n % 60000
  return wrk.format("GET", path .. "?info_hash=" .. info_hash(n % torrents) .. "&peer_id="
    .. peer_id .. "&port=" .. port .. "&uploaded=0&downloaded=0&left=1&compact=1&numwant="
    .. numwant, headers)
end
