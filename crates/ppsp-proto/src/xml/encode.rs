//! Encoding of the message model as XML bodies.
//!
//! Output is compact (no indentation), UTF-8, with the direction element first and the
//! other elements in the order of the draft digest's examples. Everything taken from the
//! model is escaped, so identifiers and names may hold any of `& < > " '`.

use crate::digits::{push_ip, push_u64};
use crate::model::{
    AddressType, ChunkMapReport, ChunkSegments, Clip, MediaType, NatHints, PeerAddress, PeerInfo,
    PeerMode, Request, RequestBody, Response, Segment, Stat, StreamStats, TransactionId,
};

const PROLOG: &str =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PPSPTrackerProtocol version=\"1.0\">";
const EPILOG: &str = "</PPSPTrackerProtocol>\n";

/// Which bytes may need a reference: `& < > " '`, carriage return, and tab and line feed
/// (inside attributes). A table, because one load per byte is the cheapest test there is
/// for the identifiers a FIND answer writes, a few per listed peer.
static MAY_NEED_REFERENCE: [bool; 256] = {
    let mut table = [false; 256];
    let mut special = b"&<>\"'\r\t\n".as_slice();
    while let [byte, rest @ ..] = special {
        table[*byte as usize] = true;
        special = rest;
    }
    table
};

/// Appends `value` with the XML special characters escaped. Carriage returns are written as
/// references so that a receiver's line-end normalisation cannot change the value; tab and
/// line feed too inside attributes, where a receiver would turn them into spaces.
fn escape(out: &mut String, value: &str, attribute: bool) {
    // Most values (IDs, names) need no reference at all: one scan decides, and they are
    // copied whole.
    if !value.bytes().any(|b| MAY_NEED_REFERENCE[usize::from(b)]) {
        out.push_str(value);
        return;
    }
    // Every character that needs a reference is ASCII, so a byte scan finds them and the
    // positions found are always character boundaries.
    let mut plain_from = 0;
    for (pos, byte) in value.bytes().enumerate() {
        let reference = match byte {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&apos;",
            b'\r' => "&#13;",
            b'\t' if attribute => "&#9;",
            b'\n' if attribute => "&#10;",
            _ => continue,
        };
        out.push_str(&value[plain_from..pos]);
        out.push_str(reference);
        plain_from = pos + 1;
    }
    out.push_str(&value[plain_from..]);
}

/// `<name>escaped text</name>`. A macro so that each tag is one constant string, copied
/// without a call (a FIND answer writes a few of these per listed peer).
macro_rules! element {
    ($out:expr, $name:literal, $text:expr) => {{
        let out: &mut String = $out;
        out.push_str(concat!("<", $name, ">"));
        escape(out, $text, false);
        out.push_str(concat!("</", $name, ">"));
    }};
}

fn push_i64(out: &mut String, value: i64) {
    if value < 0 {
        out.push('-');
    }
    push_u64(out, value.unsigned_abs());
}

/// `<name>number</name>`, tags as constant strings (see [`element!`]).
macro_rules! number_element {
    ($out:expr, $name:literal, $value:expr) => {{
        let out: &mut String = $out;
        out.push_str(concat!("<", $name, ">"));
        push_u64(out, $value);
        out.push_str(concat!("</", $name, ">"));
    }};
}

/// ` name="number"`, the name and its punctuation as one constant string.
macro_rules! number_attribute {
    ($out:expr, $name:literal, $value:expr) => {{
        let out: &mut String = $out;
        out.push_str(concat!(" ", $name, "=\""));
        push_u64(out, $value);
        out.push('"');
    }};
}

fn transaction_id(out: &mut String, id: &TransactionId) {
    // Only the numeric form exists in the XML protocol; a JSON-style textual ID cannot be
    // carried and is left out.
    if let Some(value) = id.as_u64() {
        number_element!(out, "TransactionID", value);
    }
}

/// `<element ip=".." port=".." [priority=".."] [type=".."]/>`; IPv6 in RFC 5952 form
/// (std's `Display`). `open` is `<element ip="`, one constant string.
fn address(out: &mut String, open: &'static str, addr: &PeerAddress, with_ice: bool) {
    out.push_str(open);
    push_ip(out, addr.ip);
    // Each constant below closes the value before it, so that a listed peer's address is
    // written in a handful of pieces.
    out.push_str("\" port=\"");
    push_u64(out, u64::from(addr.port));
    if with_ice {
        if let Some(priority) = addr.priority {
            out.push_str("\" priority=\"");
            push_u64(out, u64::from(priority));
        }
        if let Some(kind) = addr.kind {
            out.push_str(match kind {
                AddressType::Host => "\" type=\"HOST\"/>",
                AddressType::Reflexive => "\" type=\"REFLEXIVE\"/>",
                AddressType::Proxy => "\" type=\"PROXY\"/>",
            });
            return;
        }
    }
    out.push_str("\"/>");
}

fn peer_addresses(out: &mut String, addresses: &[PeerAddress]) {
    if addresses.is_empty() {
        return;
    }
    out.push_str("<PeerAddresses>");
    for addr in addresses {
        address(out, "<PeerAddress ip=\"", addr, true);
    }
    out.push_str("</PeerAddresses>");
}

fn bool_str(value: bool) -> &'static str {
    if value { "true" } else { "false" }
}

fn simple_stat(out: &mut String, property: &str, value: bool) {
    out.push_str("<Stat property=\"");
    out.push_str(property);
    out.push_str("\">");
    out.push_str(bool_str(value));
    out.push_str("</Stat>");
}

fn hints(out: &mut String, hints: &NatHints) {
    if hints.is_empty() {
        return;
    }
    out.push_str("<Stats>");
    if let Some(nat) = hints.nat {
        simple_stat(out, "NAT", nat);
    }
    if let Some(stun) = hints.stun {
        simple_stat(out, "STUN", stun);
    }
    out.push_str("</Stats>");
}

fn media_str(media: MediaType) -> &'static str {
    match media {
        MediaType::Video => "video",
        MediaType::Audio => "audio",
    }
}

fn segment(out: &mut String, seg: &Segment) {
    out.push_str("<Segment");
    // A bitmap fixes the range: its own first and last chunk are written.
    let (from, to) = match &seg.map {
        Some(map) => (Some(map.first()), map.last()),
        None => (seg.from, seg.to),
    };
    if let Some(from) = from {
        number_attribute!(out, "from", from);
    }
    if let Some(to) = to {
        number_attribute!(out, "to", to);
    }
    if let Some(levels) = seg.levels {
        number_attribute!(out, "levels", u64::from(levels));
    }
    if let Some(chunks) = seg.chunks {
        number_attribute!(out, "chunks", chunks);
    }
    match &seg.map {
        Some(map) => {
            number_attribute!(out, "bitmapsize", map.len());
            out.push('>');
            out.push_str(&map.to_base64());
            out.push_str("</Segment>");
        }
        None => out.push_str("/>"),
    }
}

fn chunk_segments(out: &mut String, segments: &ChunkSegments) {
    out.push_str("<ChunkSegments type=\"");
    out.push_str(media_str(segments.media));
    out.push_str("\">");
    for seg in &segments.segments {
        segment(out, seg);
    }
    out.push_str("</ChunkSegments>");
}

fn clip(out: &mut String, clip: &Clip) {
    out.push_str("<Clip>");
    element!(out, "Name", &clip.name);
    if let Some(kind) = clip.kind {
        // The schema and cruz-01 capitalise these.
        out.push_str(match kind {
            MediaType::Video => "<Type>Video</Type>",
            MediaType::Audio => "<Type>Audio</Type>",
        });
    }
    if let Some(index) = clip.chunk_segment_index {
        number_element!(out, "ChunkSegmentIndex", index);
    }
    if let Some(segments) = &clip.segments {
        chunk_segments(out, segments);
    }
    out.push_str("</Clip>");
}

fn chunk_map_report(out: &mut String, report: &ChunkMapReport) {
    out.push_str("<Stat property=\"ChunkMap\"><ChunkMapReport>");
    element!(out, "SwarmID", report.swarm_id.as_str());
    for c in &report.clips {
        clip(out, c);
    }
    out.push_str("</ChunkMapReport></Stat>");
}

fn stream_stats_report(out: &mut String, stats: &StreamStats) {
    out.push_str("<Stat property=\"StreamStats\"><StreamStatsReport>");
    if let Some(swarm_id) = &stats.swarm_id {
        element!(out, "SwarmID", swarm_id.as_str());
    }
    if let Some(n) = stats.uploaded_bytes {
        number_element!(out, "UploadedBytes", n);
    }
    if let Some(n) = stats.downloaded_bytes {
        number_element!(out, "DownloadedBytes", n);
    }
    if let Some(n) = stats.available_bandwidth {
        number_element!(out, "AvailBandwidth", n);
    }
    out.push_str("</StreamStatsReport></Stat>");
}

fn stats(out: &mut String, stats: &[Stat]) {
    out.push_str("<Stats>");
    for stat in stats {
        match stat {
            Stat::ChunkMap(report) => chunk_map_report(out, report),
            Stat::StreamStats(report) => stream_stats_report(out, report),
            Stat::Nat(value) => simple_stat(out, "NAT", *value),
            Stat::Stun(value) => simple_stat(out, "STUN", *value),
        }
    }
    out.push_str("</Stats>");
}

fn peer_info(out: &mut String, peer: &PeerInfo) {
    out.push_str("<PeerInfo><PeerID>");
    escape(out, peer.peer_id.as_str(), false);
    out.push_str(match peer.mode {
        Some(PeerMode::Seed) => "</PeerID><PeerMode>SEED</PeerMode>",
        Some(PeerMode::LiveSeed) => "</PeerID><PeerMode>LIVESEED</PeerMode>",
        Some(PeerMode::Leech) => "</PeerID><PeerMode>LEECH</PeerMode>",
        None => "</PeerID>",
    });
    peer_addresses(out, &peer.addresses);
    if let Some(location) = &peer.location {
        element!(out, "PeerLocation", location);
    }
    if let Some(kind) = &peer.connection_type {
        element!(out, "ConnectionType", kind);
    }
    if let Some(cost) = peer.rank_cost {
        out.push_str("<EndPointRankCost>");
        push_i64(out, cost);
        out.push_str("</EndPointRankCost>");
    }
    out.push_str("</PeerInfo>");
}

/// A rough size guess so that most messages are written without reallocating.
fn capacity_hint(extra: usize) -> usize {
    256 + extra
}

pub(crate) fn encode_request(req: &Request) -> String {
    let extra = match &req.body {
        RequestBody::StatReport(report) => report
            .stats
            .iter()
            .map(|s| match s {
                Stat::ChunkMap(r) => r
                    .clips
                    .iter()
                    .flat_map(|c| c.segments.iter().flat_map(|s| &s.segments))
                    .map(|s| {
                        s.map
                            .as_ref()
                            .map_or(0, |m| m.as_bytes().len() * 4 / 3 + 80)
                    })
                    .sum::<usize>(),
                _ => 64,
            })
            .sum(),
        RequestBody::Connect(c) => c.addresses.len() * 64,
        _ => 128,
    };
    let mut out = String::with_capacity(capacity_hint(extra));
    out.push_str(PROLOG);
    element!(&mut out, "Method", req.body.method().as_str());
    element!(&mut out, "PeerID", req.peer_id.as_str());
    if let Some(token) = &req.auth_token {
        element!(&mut out, "AuthToken", token.as_str());
    }
    match &req.body {
        RequestBody::Connect(connect) => {
            if let Some(auth) = &connect.auth {
                out.push_str("<Auth mechanism=\"");
                escape(&mut out, &auth.mechanism, true);
                out.push_str("\"/>");
                if let Some(credentials) = &auth.credentials {
                    use base64::Engine as _;
                    let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
                    element!(&mut out, "Credentials", &encoded);
                }
            }
            transaction_id(&mut out, &req.transaction_id);
            peer_addresses(&mut out, &connect.addresses);
        }
        RequestBody::Join(join) => {
            element!(&mut out, "SwarmID", join.swarm_id.as_str());
            element!(&mut out, "PeerMode", join.mode.xml_name());
            hints(&mut out, &join.hints);
            if let Some(n) = join.peer_num {
                number_element!(&mut out, "PeerNum", u64::from(n));
            }
            if let Some(c) = &join.clip {
                clip(&mut out, c);
            }
            // Our peers always send it (draft-gu-ppsp-tracker-protocol-06), 0 meaning no expiry.
            number_element!(&mut out, "ExpireTime", join.expire_time);
            transaction_id(&mut out, &req.transaction_id);
        }
        RequestBody::Leave(leave) => {
            element!(&mut out, "SwarmID", leave.swarm_id.as_str());
            transaction_id(&mut out, &req.transaction_id);
        }
        RequestBody::Find(find) => {
            element!(&mut out, "SwarmID", find.swarm_id.as_str());
            if let Some(n) = &find.peer_num {
                number_element!(&mut out, "PeerNum", u64::from(n.count));
            }
            hints(&mut out, &find.hints);
            if let Some(c) = &find.clip {
                clip(&mut out, c);
            }
            transaction_id(&mut out, &req.transaction_id);
        }
        RequestBody::StatReport(report) => {
            transaction_id(&mut out, &req.transaction_id);
            stats(&mut out, &report.stats);
        }
        RequestBody::Disconnect | RequestBody::KeepAlive => {
            transaction_id(&mut out, &req.transaction_id);
        }
    }
    out.push_str(EPILOG);
    out
}

pub(crate) fn encode_response(resp: &Response) -> String {
    let peers = resp.swarm_results.first().map_or(0, |r| r.peers.len());
    // About 300 bytes per listed peer with two addresses.
    let mut out = String::with_capacity(capacity_hint(peers * 320));
    out.push_str(PROLOG);
    element!(&mut out, "Response", resp.status.ppsp_str());
    if let Some(token) = &resp.auth_token {
        element!(&mut out, "AuthToken", token.as_str());
    }
    for addr in &resp.reflexive_addresses {
        address(&mut out, "<ReflexiveAddress ip=\"", addr, false);
    }
    // The XML protocol answers for one swarm only.
    if let Some(result) = resp.swarm_results.first() {
        element!(&mut out, "SwarmID", result.swarm_id.as_str());
        if !result.peers.is_empty() {
            out.push_str("<PeerInfoList>");
            for peer in &result.peers {
                peer_info(&mut out, peer);
            }
            out.push_str("</PeerInfoList>");
        }
    }
    if let Some(id) = &resp.transaction_id {
        transaction_id(&mut out, id);
    }
    out.push_str(EPILOG);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_the_special_ascii_characters_become_references() {
        for byte in 0..=127u8 {
            let text = char::from(byte).to_string();
            let mut in_text = String::new();
            escape(&mut in_text, &text, false);
            let mut in_attribute = String::new();
            escape(&mut in_attribute, &text, true);
            let special_in_text = b"&<>\"'\r".contains(&byte);
            let special_in_attribute = special_in_text || b"\t\n".contains(&byte);
            assert_eq!(in_text != text, special_in_text, "byte {byte} in text");
            assert_eq!(
                in_attribute != text,
                special_in_attribute,
                "byte {byte} in an attribute"
            );
            assert_eq!(MAY_NEED_REFERENCE[usize::from(byte)], special_in_attribute);
        }
        assert!(MAY_NEED_REFERENCE[128..].iter().all(|special| !special));
    }

    #[test]
    fn a_listed_peer_is_written_exactly() {
        let mut peer = PeerInfo {
            peer_id: crate::model::PeerId::new("p&1").expect("peer id"),
            mode: Some(PeerMode::LiveSeed),
            addresses: vec![
                PeerAddress::new("10.0.0.1".parse().expect("ip"), 7000)
                    .with_priority(5)
                    .with_kind(AddressType::Reflexive),
                PeerAddress::new("2001:db8::1".parse().expect("ip"), 7001),
            ],
            location: None,
            connection_type: None,
            rank_cost: Some(-3),
        };
        let mut out = String::new();
        peer_info(&mut out, &peer);
        assert_eq!(
            out,
            "<PeerInfo><PeerID>p&amp;1</PeerID><PeerMode>LIVESEED</PeerMode><PeerAddresses>\
             <PeerAddress ip=\"10.0.0.1\" port=\"7000\" priority=\"5\" type=\"REFLEXIVE\"/>\
             <PeerAddress ip=\"2001:db8::1\" port=\"7001\"/></PeerAddresses>\
             <EndPointRankCost>-3</EndPointRankCost></PeerInfo>"
        );
        peer.mode = None;
        peer.addresses.truncate(1);
        peer.addresses[0].kind = None;
        peer.rank_cost = None;
        let mut out = String::new();
        peer_info(&mut out, &peer);
        assert_eq!(
            out,
            "<PeerInfo><PeerID>p&amp;1</PeerID><PeerAddresses><PeerAddress ip=\"10.0.0.1\" \
             port=\"7000\" priority=\"5\"/></PeerAddresses></PeerInfo>"
        );
        let mut out = String::new();
        address(
            &mut out,
            "<ReflexiveAddress ip=\"",
            &peer.addresses[0],
            false,
        );
        assert_eq!(out, "<ReflexiveAddress ip=\"10.0.0.1\" port=\"7000\"/>");
    }
}
