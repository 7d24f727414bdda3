//! Differential target for the flat path's reading of `Stats` (the nested part of a
//! STAT_REPORT). It builds a STAT_REPORT whose `Stats` hold elements near the shape the
//! encoder writes (NAT and STUN flags, stream counters, chunk maps with clips and segments),
//! with deviations mixed in: other spellings and values, duplicates, missing parts, white
//! space, quotes, references, comments, unknown elements and attributes, wrong end tags.
//! The decoder checks every message its flat path takes against the full decoder with a
//! debug assertion, which fuzz builds keep, so any disagreement is a crash.
//!
//! Input: each byte chooses the next piece of the `Stats` content from a table; a piece is
//! a whole element, a start or end tag, an attribute's worth of a tag, or text.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ppsp_proto::Limits;
use ppsp_proto::xml::decode;

const HEAD: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><PPSPTrackerProtocol \
version=\"1.0\"><Method>STAT_REPORT</Method><PeerID>peer-1</PeerID><AuthToken>dG9rZW4=\
</AuthToken><TransactionID>7</TransactionID><Stats>";

const TAIL: &str = "</Stats></PPSPTrackerProtocol>";

const PIECES: [&str; 64] = [
    // Whole elements as the encoder writes them.
    "<Stat property=\"NAT\">true</Stat>",
    "<Stat property=\"STUN\">false</Stat>",
    "<Stat property=\"StreamStats\"><StreamStatsReport><SwarmID>s</SwarmID><UploadedBytes>1\
</UploadedBytes><DownloadedBytes>2</DownloadedBytes><AvailBandwidth>3</AvailBandwidth>\
</StreamStatsReport></Stat>",
    "<Stat property=\"ChunkMap\"><ChunkMapReport><SwarmID>s</SwarmID><Clip><Name>c</Name>\
<ChunkSegments type=\"video\"><Segment from=\"100\" to=\"111\" bitmapsize=\"12\">/yA=</Segment>\
</ChunkSegments></Clip></ChunkMapReport></Stat>",
    "<Segment from=\"0\" to=\"7\" bitmapsize=\"8\">gA==</Segment>",
    "<Segment from=\"5\" to=\"9\"/>",
    "<Segment from=\"5\" to=\"9\" levels=\"2\" chunks=\"3\"/>",
    "<Segment from=\"0\" to=\"1023\" bitmapSize=\"1024\"></Segment>",
    // Start tags, with and without attributes.
    "<Stat property=\"NAT\">",
    "<Stat property=\"STUN\">",
    "<Stat property=\"StreamStats\">",
    "<Stat property=\"ChunkMap\">",
    "<Stat property=\"chunkmap\">",
    "<Stat property=\" NAT \">",
    "<Stat property=\"BatteryLevel\">",
    "<Stat property='NAT'>",
    "<Stat>",
    "<Stat property=\"NAT\" x=\"1\">",
    "<StreamStatsReport>",
    "<ChunkMapReport>",
    "<Clip>",
    "<ChunkSegments type=\"video\">",
    "<ChunkSegments type=\"Audio\">",
    "<ChunkSegments type=\"text\">",
    "<ChunkSegments>",
    "<Segment from=\"1\" to=\"8\" bitmapsize=\"8\">",
    "<Segment from=\"9\" to=\"1\">",
    "<Segment from=\"1\" from=\"1\" to=\"2\">",
    "<SwarmID>",
    "<UploadedBytes>",
    "<DownloadedBytes>",
    "<AvailBandwidth>",
    "<Name>",
    "<Type>",
    "<ChunkSegmentIndex>",
    "<Unknown>",
    // End tags.
    "</Stat>",
    "</StreamStatsReport>",
    "</ChunkMapReport>",
    "</Clip>",
    "</ChunkSegments>",
    "</Segment>",
    "</SwarmID>",
    "</UploadedBytes>",
    "</DownloadedBytes>",
    "</AvailBandwidth>",
    "</Name>",
    "</Type>",
    "</ChunkSegmentIndex>",
    "</Unknown>",
    "</Stat >",
    // Text and other markup.
    "s",
    "42",
    "18446744073709551616",
    "video",
    "true",
    "1",
    "/yA=",
    " ",
    "\n\t",
    "\r",
    "&amp;",
    "<!--c-->",
    "<![CDATA[x]]>",
];

fuzz_target!(|data: &[u8]| {
    let mut doc = String::from(HEAD);
    for &byte in data {
        doc.push_str(PIECES[usize::from(byte) % PIECES.len()]);
    }
    doc.push_str(TAIL);
    // The flat path runs under the differential assertion for the limits it depends on.
    let _ = decode(doc.as_bytes(), &Limits::default());
    let tight = Limits {
        max_depth: 7,
        max_list_len: 2,
        max_bitmap_bits: 16,
        ..Limits::default()
    };
    let _ = decode(doc.as_bytes(), &tight);
});
