//! The connection to Redis (one server or a cluster), every call under a time-out, and the
//! one script that applies a checked change to keys of one slot.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, Script};

use ppsp_tracker_core::{StoreError, TrackerError};

use crate::RedisStoreError;

/// Applies a list of operations to keys of one slot, atomically, when every check holds.
///
/// `ARGV[1]` is `h` to measure the hash `KEYS[1]` (the member hash of a swarm) before and
/// after, and delete the other keys once it is empty, or `-`. Then operations follow, each
/// a name, a key index and its arguments. Checks (`cs`: a string key holds a value, `ch`: a
/// hash field holds a value; the empty string means absent) run first; if one fails nothing
/// is written. Returns `{applied, length before, length after}`.
const APPLY: &str = r"
local arity = {key=1, cs=2, ch=3, set=2, del=1, hset=3, hdel=2, zadd=3, zrem=2, hincr=3, sadd=2, srem=2}
local i = 2
while i <= #ARGV do
  local op = ARGV[i]
  local k = KEYS[tonumber(ARGV[i+1])]
  if op == 'cs' then
    if (redis.call('GET', k) or '') ~= ARGV[i+2] then return {0, 0, 0} end
  elseif op == 'ch' then
    if (redis.call('HGET', k, ARGV[i+2]) or '') ~= ARGV[i+3] then return {0, 0, 0} end
  end
  i = i + 2 + arity[op] - 1
end
local measure = ARGV[1] == 'h'
local before = 0
if measure then before = redis.call('HLEN', KEYS[1]) end
i = 2
while i <= #ARGV do
  local op = ARGV[i]
  local k = KEYS[tonumber(ARGV[i+1])]
  local a = ARGV[i+2]
  local b = ARGV[i+3]
  if op == 'set' then redis.call('SET', k, a)
  elseif op == 'del' then redis.call('DEL', k)
  elseif op == 'hset' then redis.call('HSET', k, a, b)
  elseif op == 'hdel' then redis.call('HDEL', k, a)
  elseif op == 'zadd' then redis.call('ZADD', k, a, b)
  elseif op == 'zrem' then redis.call('ZREM', k, a)
  elseif op == 'hincr' then
    if redis.call('HINCRBY', k, a, b) == 0 then redis.call('HDEL', k, a) end
  elseif op == 'sadd' then redis.call('SADD', k, a)
  elseif op == 'srem' then redis.call('SREM', k, a)
  end
  i = i + 2 + arity[op] - 1
end
local after = 0
if measure then
  after = redis.call('HLEN', KEYS[1])
  if after == 0 then
    for j = 2, #KEYS do redis.call('DEL', KEYS[j]) end
  end
end
return {1, before, after}
";

/// Adds one to a counter unless that passes the cap (`ARGV[1]`); 1 when added.
const INCREMENT_CAPPED: &str = r"
local v = redis.call('INCR', KEYS[1])
if v > tonumber(ARGV[1]) then
  if redis.call('DECR', KEYS[1]) <= 0 then redis.call('DEL', KEYS[1]) end
  return 0
end
return 1
";

/// Takes one from a counter, deleting it at zero.
const DECREMENT: &str = r"
if redis.call('DECR', KEYS[1]) <= 0 then redis.call('DEL', KEYS[1]) end
return 1
";

/// Operations for [`APPLY`] on keys of one slot.
#[derive(Debug, Default)]
pub(crate) struct Ops {
    keys: Vec<String>,
    argv: Vec<String>,
    measure: bool,
}

impl Ops {
    /// Operations on a swarm whose member hash is `members`: its length is measured and
    /// its other keys vanish with the last member.
    pub(crate) fn on_swarm(members: &str) -> Self {
        Self {
            keys: vec![members.to_owned()],
            argv: Vec::new(),
            measure: true,
        }
    }

    fn key(&mut self, key: &str) -> String {
        let index = match self.keys.iter().position(|k| k == key) {
            Some(index) => index,
            None => {
                self.keys.push(key.to_owned());
                self.keys.len() - 1
            }
        };
        (index + 1).to_string()
    }

    fn push(&mut self, op: &str, key: &str, args: &[&str]) -> &mut Self {
        let index = self.key(key);
        self.argv.push(op.to_owned());
        self.argv.push(index);
        self.argv.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// The string `key` holds `expected` (`None`: it does not exist).
    pub(crate) fn check(&mut self, key: &str, expected: Option<&str>) -> &mut Self {
        self.push("cs", key, &[expected.unwrap_or("")])
    }

    /// Field `field` of hash `key` holds `expected` (`None`: it does not exist).
    pub(crate) fn check_field(
        &mut self,
        key: &str,
        field: &str,
        expected: Option<&str>,
    ) -> &mut Self {
        self.push("ch", key, &[field, expected.unwrap_or("")])
    }

    /// Names a key without touching it (so an emptied swarm deletes it).
    pub(crate) fn include(&mut self, key: &str) -> &mut Self {
        self.push("key", key, &[])
    }

    pub(crate) fn set(&mut self, key: &str, value: &str) -> &mut Self {
        self.push("set", key, &[value])
    }

    pub(crate) fn del(&mut self, key: &str) -> &mut Self {
        self.push("del", key, &[])
    }

    pub(crate) fn hset(&mut self, key: &str, field: &str, value: &str) -> &mut Self {
        self.push("hset", key, &[field, value])
    }

    pub(crate) fn hdel(&mut self, key: &str, field: &str) -> &mut Self {
        self.push("hdel", key, &[field])
    }

    pub(crate) fn zadd(&mut self, key: &str, score: u64, member: &str) -> &mut Self {
        self.push("zadd", key, &[&score.to_string(), member])
    }

    pub(crate) fn zrem(&mut self, key: &str, member: &str) -> &mut Self {
        self.push("zrem", key, &[member])
    }

    /// Adds `delta` to a hash field; a field reaching zero is deleted.
    pub(crate) fn hincr(&mut self, key: &str, field: &str, delta: i64) -> &mut Self {
        if delta == 0 {
            return self;
        }
        self.push("hincr", key, &[field, &delta.to_string()])
    }

    pub(crate) fn sadd(&mut self, key: &str, member: &str) -> &mut Self {
        self.push("sadd", key, &[member])
    }

    pub(crate) fn srem(&mut self, key: &str, member: &str) -> &mut Self {
        self.push("srem", key, &[member])
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.argv.is_empty()
    }
}

/// What [`Backend::apply`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Applied {
    /// A check failed; nothing was written.
    Conflict,
    /// Written; the measured hash's length before and after.
    Done { before: u64, after: u64 },
}

#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// A connection and the settings every call needs.
#[derive(Clone)]
pub(crate) struct Backend {
    connection: Connection,
    address: String,
    timeout: Duration,
    apply: Script,
    increment_capped: Script,
    decrement: Script,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// Where a store is, parsed from its URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreAddress {
    /// One server (or a primary with replicas behind one address): `redis://HOST:PORT`.
    Single(String),
    /// Cluster seed nodes: `redis-cluster://H:P[,H:P...]`.
    Cluster(Vec<String>),
}

impl StoreAddress {
    /// Parses `redis://HOST:PORT[/DB]` or `redis-cluster://H:P[,H:P...]`.
    ///
    /// # Errors
    /// [`RedisStoreError::BadUrl`] for any other form.
    pub fn parse(url: &str) -> Result<Self, RedisStoreError> {
        let bad = || RedisStoreError::BadUrl {
            url: url.to_owned(),
        };
        if let Some(nodes) = url.strip_prefix("redis-cluster://") {
            let nodes: Vec<String> = nodes
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(|n| format!("redis://{n}"))
                .collect();
            if nodes.is_empty() {
                return Err(bad());
            }
            return Ok(Self::Cluster(nodes));
        }
        if url.starts_with("redis://") && url.len() > "redis://".len() {
            return Ok(Self::Single(url.to_owned()));
        }
        Err(bad())
    }
}

impl Backend {
    /// Connects, failing within `timeout`.
    pub(crate) async fn connect(
        address: &StoreAddress,
        label: &str,
        timeout: Duration,
    ) -> Result<Self, RedisStoreError> {
        let unavailable = |reason: String| RedisStoreError::Unavailable {
            address: label.to_owned(),
            reason,
        };
        let connecting = async {
            match address {
                StoreAddress::Single(url) => {
                    let client = redis::Client::open(url.as_str())
                        .map_err(|e| unavailable(e.to_string()))?;
                    let config = ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(timeout))
                        .set_response_timeout(Some(timeout))
                        .set_number_of_retries(1);
                    client
                        .get_connection_manager_with_config(config)
                        .await
                        .map(Connection::Single)
                        .map_err(|e| unavailable(e.to_string()))
                }
                StoreAddress::Cluster(nodes) => {
                    let client = ClusterClient::builder(nodes.clone())
                        .connection_timeout(timeout)
                        .response_timeout(timeout)
                        .retries(2)
                        .build()
                        .map_err(|e| unavailable(e.to_string()))?;
                    client
                        .get_async_connection()
                        .await
                        .map(Connection::Cluster)
                        .map_err(|e| unavailable(e.to_string()))
                }
            }
        };
        let connection = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| unavailable("no answer in time".into()))??;
        let backend = Self {
            connection,
            address: label.to_owned(),
            timeout,
            apply: Script::new(APPLY),
            increment_capped: Script::new(INCREMENT_CAPPED),
            decrement: Script::new(DECREMENT),
        };
        backend
            .query::<String>(&redis::cmd("PING"))
            .await
            .map_err(|_| unavailable("no answer to PING".into()))?;
        Ok(backend)
    }

    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    pub(crate) fn unavailable(&self) -> TrackerError {
        TrackerError::Store(StoreError::Unavailable {
            address: self.address.clone(),
        })
    }

    pub(crate) fn malformed(&self, what: &'static str) -> TrackerError {
        TrackerError::Store(StoreError::Malformed {
            address: self.address.clone(),
            what,
        })
    }

    async fn run<T, F, Fut>(&self, call: F) -> Result<T, TrackerError>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(self.timeout, call(self.connection.clone())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) if error.kind() == redis::ErrorKind::Parse => {
                Err(self.malformed("reply"))
            }
            Ok(Err(_)) | Err(_) => Err(self.unavailable()),
        }
    }

    /// Runs one command.
    pub(crate) async fn query<T: FromRedisValue + Send>(
        &self,
        command: &Cmd,
    ) -> Result<T, TrackerError> {
        self.run(|connection| async move {
            match connection {
                Connection::Single(mut c) => command.query_async(&mut c).await,
                Connection::Cluster(mut c) => command.query_async(&mut c).await,
            }
        })
        .await
    }

    async fn invoke<T: FromRedisValue + Send>(
        &self,
        script: &Script,
        keys: &[String],
        argv: &[String],
    ) -> Result<T, TrackerError> {
        self.run(|connection| async move {
            let mut invocation = script.prepare_invoke();
            for key in keys {
                invocation.key(key);
            }
            for arg in argv {
                invocation.arg(arg);
            }
            match connection {
                Connection::Single(mut c) => invoke_on(&invocation, &mut c).await,
                Connection::Cluster(mut c) => invoke_on(&invocation, &mut c).await,
            }
        })
        .await
    }

    /// Applies `ops` atomically (see [`APPLY`]).
    pub(crate) async fn apply(&self, ops: &Ops) -> Result<Applied, TrackerError> {
        if ops.is_empty() {
            return Ok(Applied::Done {
                before: 0,
                after: 0,
            });
        }
        let mut argv = Vec::with_capacity(ops.argv.len() + 1);
        argv.push(if ops.measure { "h" } else { "-" }.to_owned());
        argv.extend(ops.argv.iter().cloned());
        let reply: Vec<i64> = self.invoke(&self.apply, &ops.keys, &argv).await?;
        match reply.as_slice() {
            [0, ..] => Ok(Applied::Conflict),
            [1, before, after] => Ok(Applied::Done {
                before: u64::try_from(*before).unwrap_or(0),
                after: u64::try_from(*after).unwrap_or(0),
            }),
            _ => Err(self.malformed("script reply")),
        }
    }

    /// Adds one to `key` unless that passes `cap`; true when added.
    pub(crate) async fn increment_capped(&self, key: &str, cap: u64) -> Result<bool, TrackerError> {
        let added: i64 = self
            .invoke(
                &self.increment_capped,
                &[key.to_owned()],
                &[cap.to_string()],
            )
            .await?;
        Ok(added == 1)
    }

    /// Takes one from `key`, deleting it at zero.
    pub(crate) async fn decrement(&self, key: &str) -> Result<(), TrackerError> {
        let _: i64 = self.invoke(&self.decrement, &[key.to_owned()], &[]).await?;
        Ok(())
    }
}

async fn invoke_on<C: ConnectionLike, T: FromRedisValue>(
    invocation: &redis::ScriptInvocation<'_>,
    connection: &mut C,
) -> redis::RedisResult<T> {
    invocation.invoke_async(connection).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_parse_or_are_refused() {
        assert_eq!(
            StoreAddress::parse("redis://127.0.0.1:6379").ok(),
            Some(StoreAddress::Single("redis://127.0.0.1:6379".into()))
        );
        assert_eq!(
            StoreAddress::parse("redis-cluster://127.0.0.1:7000, 127.0.0.2:7001").ok(),
            Some(StoreAddress::Cluster(vec![
                "redis://127.0.0.1:7000".into(),
                "redis://127.0.0.2:7001".into()
            ]))
        );
        for bad in [
            "memory",
            "redis://",
            "redis-cluster://",
            "http://127.0.0.1:6379",
        ] {
            assert!(
                matches!(
                    StoreAddress::parse(bad),
                    Err(RedisStoreError::BadUrl { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn operations_name_each_key_once() {
        let mut ops = Ops::on_swarm("m");
        ops.include("j")
            .hset("m", "p", "v")
            .zadd("j", 5, "p")
            .hincr("c", "seeds", 0);
        assert_eq!(ops.keys, ["m", "j"]);
        assert_eq!(
            ops.argv,
            ["key", "2", "hset", "1", "p", "v", "zadd", "2", "5", "p"]
        );
    }
}
