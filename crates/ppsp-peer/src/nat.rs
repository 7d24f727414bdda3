//! Address gathering and NAT traversal helpers.
//!
//! A peer declares its transport addresses in CONNECT as ICE-style candidates (draft digest
//! §5.6, §8): HOST addresses of its own interfaces and, when it learned one, the REFLEXIVE
//! address a NAT maps it to. This module finds those addresses without any platform-specific
//! interface listing:
//!
//! * [`host_candidates`]: the specific listen address, if any, plus the local address the
//!   operating system picks for a UDP socket "connected" towards each tracker (no packet is
//!   sent; the kernel only consults its routing table);
//! * [`stun_mapping`]: the public mapping of a UDP socket, asked from a STUN server with the
//!   RFC 8489 retransmission schedule;
//! * [`behind_nat`]: whether the address the tracker observed at CONNECT is one the peer
//!   declared;
//! * [`ice_priority`]: the RFC 8445 §5.1.2.1 priority of each candidate.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ppsp_proto::{AddressType, PeerAddress};
use rand::{Rng as _, SeedableRng as _};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::tracker_client::ClientError;

/// ICE type preference of a host candidate (RFC 8445 recommendation).
pub const TYPE_PREFERENCE_HOST: u32 = 126;
/// ICE type preference of a server-reflexive candidate.
pub const TYPE_PREFERENCE_REFLEXIVE: u32 = 100;
/// ICE type preference of a relayed (proxy) candidate.
pub const TYPE_PREFERENCE_PROXY: u32 = 0;
/// The port STUN servers listen on when a URL gives none (RFC 8489 §18.6).
pub const DEFAULT_STUN_PORT: u16 = 3478;

/// The ICE type preference of a candidate type.
pub fn type_preference(kind: AddressType) -> u32 {
    match kind {
        AddressType::Host => TYPE_PREFERENCE_HOST,
        AddressType::Reflexive => TYPE_PREFERENCE_REFLEXIVE,
        AddressType::Proxy => TYPE_PREFERENCE_PROXY,
    }
}

/// RFC 8445 §5.1.2.1 candidate priority:
/// `2^24 * type_preference + 2^8 * local_preference + (256 - component_id)`.
///
/// `type_preference` is clamped to 0..=126 and `component_id` to 1..=256, the ranges the
/// formula is defined for, so the result always fits in 32 bits.
pub fn ice_priority(type_preference: u32, local_preference: u16, component_id: u16) -> u32 {
    let type_preference = type_preference.min(126);
    let component_id = u32::from(component_id.clamp(1, 256));
    (type_preference << 24) + (u32::from(local_preference) << 8) + (256 - component_id)
}

/// A candidate of the given type with its priority set (component 1, the only one a PPSP
/// peer has).
pub fn candidate(address: SocketAddr, kind: AddressType, local_preference: u16) -> PeerAddress {
    PeerAddress::new(address.ip().to_canonical(), address.port())
        .with_kind(kind)
        .with_priority(ice_priority(type_preference(kind), local_preference, 1))
}

/// The local address the operating system would use to reach `target`.
///
/// Binds a UDP socket and connects it, which only selects a route; nothing is sent.
///
/// # Errors
/// [`ClientError::Io`] when no route exists or sockets cannot be opened.
pub async fn local_address_towards(target: SocketAddr) -> Result<IpAddr, ClientError> {
    let wildcard: SocketAddr = if target.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(wildcard)
        .await
        .map_err(|source| ClientError::io("binding a UDP socket", source))?;
    socket
        .connect(target)
        .await
        .map_err(|source| ClientError::io(format!("finding a route to {target}"), source))?;
    let local = socket
        .local_addr()
        .map_err(|source| ClientError::io("reading a socket's address", source))?;
    Ok(local.ip().to_canonical())
}

/// The HOST candidates to declare for a peer listening on `listen`.
///
/// A specific listen IP is declared as it is. For a wildcard listen address (`0.0.0.0` or
/// `::`), the interface the system routes towards each of `targets` (typically the trackers)
/// is declared instead, with the listen port. Duplicates are removed; earlier candidates get
/// a higher local preference. Targets without a route are skipped.
pub async fn host_candidates(listen: SocketAddr, targets: &[SocketAddr]) -> Vec<PeerAddress> {
    let mut ips: Vec<IpAddr> = Vec::new();
    if !listen.ip().is_unspecified() {
        ips.push(listen.ip().to_canonical());
    } else {
        for target in targets {
            // A wildcard of one family only accepts connections of that family (IPv6
            // wildcards usually take both, so they keep every target).
            if listen.is_ipv4() && !target.ip().to_canonical().is_ipv4() {
                continue;
            }
            match local_address_towards(*target).await {
                Ok(ip) if !ip.is_unspecified() && !ips.contains(&ip) => ips.push(ip),
                _ => {}
            }
        }
    }
    ips.iter()
        .enumerate()
        .map(|(rank, ip)| {
            let local_preference = u16::MAX.saturating_sub(u16::try_from(rank).unwrap_or(u16::MAX));
            candidate(
                SocketAddr::new(*ip, listen.port()),
                AddressType::Host,
                local_preference,
            )
        })
        .collect()
}

/// True when `observed` (the tracker's ReflexiveAddress, or a STUN mapping) is not the IP of
/// one of the peer's own interfaces: something between the peer and the tracker rewrote its
/// source address. Only HOST candidates (or untyped ones) count as the peer's own; a
/// declared REFLEXIVE address matches the observed one precisely because of the NAT.
pub fn behind_nat(observed: IpAddr, declared: &[PeerAddress]) -> bool {
    let observed = observed.to_canonical();
    !declared.iter().any(|address| {
        matches!(address.kind, None | Some(AddressType::Host))
            && address.ip.to_canonical() == observed
    })
}

/// Retransmission schedule of a STUN Binding transaction over UDP (RFC 8489 §6.2.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StunTiming {
    /// First retransmission timeout; doubled after every send (RFC default 500 ms).
    pub initial_rto: Duration,
    /// Most requests sent, the first included (RFC `Rc`, default 7).
    pub max_transmissions: u32,
    /// After the last request, wait this many times `initial_rto` (RFC `Rm`, default 16).
    pub final_wait_factor: u32,
    /// Hard bound on the whole transaction, so a peer's start-up never waits the full
    /// 39.5 s of the RFC schedule for a silent server (default 10 s).
    pub overall_limit: Duration,
}

impl Default for StunTiming {
    fn default() -> Self {
        Self {
            initial_rto: Duration::from_millis(500),
            max_transmissions: 7,
            final_wait_factor: 16,
            overall_limit: Duration::from_secs(10),
        }
    }
}

/// Splits `stun://host:port`, `stun:host:port` or `host[:port]` into a host and a port
/// (default 3478). IPv6 literals are written in brackets.
///
/// # Errors
/// [`ClientError::BadUrl`] for another scheme, an empty host or a bad port.
pub fn parse_stun_server(text: &str) -> Result<(String, u16), ClientError> {
    let bad = |why: &str| ClientError::BadUrl(format!("STUN server {text:?}: {why}"));
    let rest = if let Some(rest) = text.strip_prefix("stun://") {
        rest
    } else if let Some(rest) = text.strip_prefix("stun:") {
        rest
    } else if text.contains("://") {
        return Err(bad("only stun: URLs are supported"));
    } else {
        text
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| bad("unclosed '['"))?;
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err(bad("junk after the address")),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match port {
        Some(port) => port.parse::<u16>().map_err(|_| bad("bad port"))?,
        None => DEFAULT_STUN_PORT,
    };
    Ok((host.to_owned(), port))
}

/// Asks the STUN server `server` (see [`parse_stun_server`]) for the public mapping of a UDP
/// socket bound to `local`.
///
/// Bind `local` to the peer's listen address so that a port-preserving NAT reports the
/// mapping of the port the peer really uses; if that port is taken, pass port 0 and
/// declare the mapped IP with the listen port instead. Requests are retransmitted with the
/// same transaction ID on the RFC 8489 schedule of `timing`; answers from other addresses or
/// for other transactions are ignored.
///
/// # Errors
/// [`ClientError::BadUrl`] for an unusable server string, [`ClientError::Io`] for socket
/// failures, [`ClientError::Stun`] when the server answers with an error, and
/// [`ClientError::StunTimeout`] when it never answers.
pub async fn stun_mapping(
    server: &str,
    local: SocketAddr,
    timing: &StunTiming,
) -> Result<SocketAddr, ClientError> {
    let (host, port) = parse_stun_server(server)?;
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|source| ClientError::io(format!("resolving STUN server {host}"), source))?
        .collect();
    // Prefer a server address of the local socket's family; failing that, query from a
    // wildcard socket of the server's family on the same port.
    let (server_address, local) = match resolved
        .iter()
        .find(|candidate| candidate.is_ipv4() == local.is_ipv4())
    {
        Some(server) => (*server, local),
        None => {
            let server = *resolved
                .first()
                .ok_or_else(|| ClientError::BadUrl(format!("STUN server {host} has no address")))?;
            let wildcard: IpAddr = if server.is_ipv4() {
                std::net::Ipv4Addr::UNSPECIFIED.into()
            } else {
                std::net::Ipv6Addr::UNSPECIFIED.into()
            };
            (server, SocketAddr::new(wildcard, local.port()))
        }
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|source| ClientError::io(format!("binding UDP {local}"), source))?;
    stun_mapping_on(&socket, server_address, timing).await
}

/// The public address to declare as REFLEXIVE for a peer listening on `listen`.
///
/// The query is made from a UDP socket on the listen port when that port is free for UDP,
/// so a port-preserving NAT reports the mapping of the very port peers will connect to.
/// Otherwise an ephemeral port is used and the mapped IP is paired with the listen port,
/// assuming the NAT preserves ports (the same assumption the tracker makes, draft-gu-ppsp-tracker-protocol-06).
///
/// # Errors
/// As [`stun_mapping`].
pub async fn reflexive_address(
    server: &str,
    listen: SocketAddr,
    timing: &StunTiming,
) -> Result<SocketAddr, ClientError> {
    match stun_mapping(server, listen, timing).await {
        Err(ClientError::Io { .. }) if listen.port() != 0 => {
            let ephemeral = SocketAddr::new(listen.ip(), 0);
            let mapped = stun_mapping(server, ephemeral, timing).await?;
            Ok(SocketAddr::new(mapped.ip(), listen.port()))
        }
        other => other,
    }
}

/// Runs one Binding transaction on an already bound socket (see [`stun_mapping`]).
///
/// # Errors
/// As [`stun_mapping`].
pub async fn stun_mapping_on(
    socket: &UdpSocket,
    server: SocketAddr,
    timing: &StunTiming,
) -> Result<SocketAddr, ClientError> {
    let transaction_id: [u8; 12] = rand::rngs::StdRng::from_os_rng().random();
    let request = ppsp_proto::stun::binding_request(transaction_id);
    let started = Instant::now();
    // Settings come from users; saturate instead of overflowing on absurd values.
    let far = started + Duration::from_secs(86_400);
    let hard_deadline = started
        .checked_add(timing.overall_limit)
        .unwrap_or(far)
        .min(far);
    let mut rto = timing.initial_rto;
    let mut buffer = [0u8; 1024];
    let transmissions = timing.max_transmissions.max(1);
    for sent in 1..=transmissions {
        socket.send_to(&request, server).await.map_err(|source| {
            ClientError::io(format!("sending to STUN server {server}"), source)
        })?;
        let wait = if sent == transmissions {
            timing.initial_rto.saturating_mul(timing.final_wait_factor)
        } else {
            rto
        };
        let deadline = Instant::now()
            .checked_add(wait)
            .map_or(hard_deadline, |at| at.min(hard_deadline));
        loop {
            let received = tokio::time::timeout_at(deadline, socket.recv_from(&mut buffer)).await;
            let (length, from) = match received {
                Err(_elapsed) => break,
                Ok(Err(source)) => {
                    // ICMP errors surface as a failed receive on some systems; keep waiting
                    // for the schedule instead of giving up on the first one.
                    tracing::debug!(%server, error = %source, "STUN receive failed");
                    tokio::time::sleep_until(deadline).await;
                    break;
                }
                Ok(Ok(received)) => received,
            };
            if from != server {
                continue;
            }
            let datagram = buffer.get(..length).unwrap_or_default();
            match ppsp_proto::stun::parse_binding_response(datagram, &transaction_id) {
                Ok(mapped) => return Ok(mapped),
                Err(
                    error @ (ppsp_proto::stun::StunError::ErrorResponse { .. }
                    | ppsp_proto::stun::StunError::NoMappedAddress
                    | ppsp_proto::stun::StunError::UnknownRequiredAttribute(_)),
                ) => return Err(ClientError::Stun(error)),
                // Stray, stale or corrupted datagrams: keep waiting for the real answer.
                Err(error) => tracing::debug!(%server, %error, "ignoring STUN datagram"),
            }
        }
        if Instant::now() >= hard_deadline {
            break;
        }
        rto = rto.saturating_mul(2);
    }
    Err(ClientError::StunTimeout {
        server: server.to_string(),
        waited: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_follow_rfc8445() {
        assert_eq!(ice_priority(126, 65535, 1), 2_130_706_431);
        assert_eq!(
            ice_priority(100, 65535, 1),
            (100 << 24) + (65535 << 8) + 255
        );
        assert!(ice_priority(126, 0, 1) > ice_priority(100, 65535, 1));
        // Out-of-range inputs are clamped, not overflowed.
        assert_eq!(ice_priority(500, 65535, 0), ice_priority(126, 65535, 1));
        let host = candidate(
            "[::ffff:10.0.0.1]:7000".parse().expect("address"),
            AddressType::Host,
            65535,
        );
        assert_eq!(host.ip, "10.0.0.1".parse::<IpAddr>().expect("ip"));
        assert_eq!(host.priority, Some(2_130_706_431));
    }

    #[test]
    fn nat_detection() {
        let declared = [PeerAddress::new("192.168.1.5".parse().expect("ip"), 7000)];
        assert!(behind_nat("203.0.113.9".parse().expect("ip"), &declared));
        assert!(!behind_nat("192.168.1.5".parse().expect("ip"), &declared));
        assert!(!behind_nat(
            "::ffff:192.168.1.5".parse().expect("ip"),
            &declared
        ));
        // A REFLEXIVE candidate learned by STUN does not make the peer directly reachable.
        let with_reflexive = [
            candidate(
                "192.168.1.5:7000".parse().expect("a"),
                AddressType::Host,
                65535,
            ),
            candidate(
                "203.0.113.9:7000".parse().expect("a"),
                AddressType::Reflexive,
                65535,
            ),
        ];
        assert!(behind_nat(
            "203.0.113.9".parse().expect("ip"),
            &with_reflexive
        ));
    }

    #[test]
    fn stun_server_strings() {
        assert_eq!(
            parse_stun_server("stun://example.net:3479").expect("ok"),
            ("example.net".to_owned(), 3479)
        );
        assert_eq!(
            parse_stun_server("stun:example.net").expect("ok"),
            ("example.net".to_owned(), 3478)
        );
        assert_eq!(
            parse_stun_server("[::1]:9").expect("ok"),
            ("::1".to_owned(), 9)
        );
        assert_eq!(
            parse_stun_server("127.0.0.1:1").expect("ok"),
            ("127.0.0.1".to_owned(), 1)
        );
        assert!(parse_stun_server("http://x:1").is_err());
        assert!(parse_stun_server("stun://:1").is_err());
        assert!(parse_stun_server("stun://x:99999").is_err());
    }

    #[tokio::test]
    async fn host_candidates_of_a_specific_and_a_wildcard_listen_address() {
        let tracker: SocketAddr = "127.0.0.1:9".parse().expect("address");
        let specific = host_candidates("127.0.0.1:7000".parse().expect("a"), &[]).await;
        assert_eq!(specific.len(), 1);
        assert_eq!(specific[0].port, 7000);
        let wildcard = host_candidates("0.0.0.0:7001".parse().expect("a"), &[tracker]).await;
        assert_eq!(wildcard.len(), 1);
        assert_eq!(wildcard[0].ip, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(wildcard[0].port, 7001);
        assert_eq!(wildcard[0].kind, Some(AddressType::Host));
    }
}
