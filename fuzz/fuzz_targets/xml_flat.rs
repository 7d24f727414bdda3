//! Differential target for the XML decoder's flat path. It builds documents near the flat
//! shape that path takes (a known declaration or none, the root with its `version`, children
//! holding text) from the fuzzer's bytes, with deviations mixed in: references, CDATA,
//! comments, carriage returns, attributes, nested and empty elements, unknown names, bad
//! values, stray text. The decoder checks every message its flat path takes against the full
//! decoder with a debug assertion, which fuzz builds keep, so any disagreement is a crash.
//!
//! Input: one byte picks the declaration, one the root's version; then each pair of bytes
//! adds a child: its name, and which pieces make up its text (and how it is closed).

#![no_main]

use libfuzzer_sys::fuzz_target;
use ppsp_proto::Limits;
use ppsp_proto::xml::decode;

const DECLARATIONS: [&str; 7] = [
    "",
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>",
    "<?xml version=\"1.0\"?>",
    "<?xml version='1.0' encoding='UTF-8'?>\n",
    "<?xml version=\"1.1\"?>",
    " ",
];

const VERSIONS: [&str; 8] = [
    "\"1.0\"", "'1.0'", "\"1\"", "\"2.0\"", "\" 1.0 \"", "\"1.0\" x=\"y\"", "\"1&#46;0\"", "\"\"",
];

const NAMES: [&str; 14] = [
    "Method",
    "Response",
    "PeerID",
    "AuthToken",
    "TransactionID",
    "SwarmID",
    "Credentials",
    "PeerMode",
    "PeerNum",
    "ExpireTime",
    "Clip",
    "Stats",
    "Unknown",
    "p:Method",
];

const PIECES: [&str; 32] = [
    "FIND",
    "JOIN",
    "KEEPALIVE",
    "LEAVE",
    "OK",
    "Object not found",
    "SEED",
    "LEECH",
    "20",
    "0",
    "18446744073709551616",
    "peer-1",
    "dG9rZW4=",
    " ",
    "\n",
    "\t",
    "\r\n",
    "&amp;",
    "&#x41;",
    "&bogus;",
    "<![CDATA[x]]>",
    "<!--c-->",
    "<?pi?>",
    "<i/>",
    ">",
    "]]>",
    "é",
    "\u{7}",
    "\u{FFFE}",
    "a:b",
    "'\"",
    "",
];

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.iter().copied();
    let mut doc = String::new();
    doc.push_str(DECLARATIONS[usize::from(bytes.next().unwrap_or(1)) % DECLARATIONS.len()]);
    doc.push_str("<PPSPTrackerProtocol version=");
    doc.push_str(VERSIONS[usize::from(bytes.next().unwrap_or(0)) % VERSIONS.len()]);
    doc.push('>');
    while let (Some(name), Some(shape)) = (bytes.next(), bytes.next()) {
        let name = NAMES[usize::from(name) % NAMES.len()];
        doc.push('<');
        doc.push_str(name);
        match shape >> 6 {
            0 => doc.push('>'),
            1 => doc.push_str(" a=\"1\">"),
            2 => doc.push_str(" >"),
            _ => {
                doc.push_str("/>");
                continue;
            }
        }
        // Up to three pieces of text, chosen by the low bits.
        for piece in [shape & 0x1f, (shape >> 1) & 0x1f, (shape >> 2) & 0x1f]
            .into_iter()
            .take(1 + usize::from(shape & 3).min(2))
        {
            doc.push_str(PIECES[usize::from(piece)]);
        }
        doc.push_str("</");
        doc.push_str(if shape & 0x20 != 0 && name == "PeerID" { "PeerId" } else { name });
        doc.push('>');
        if shape == 0x3f {
            doc.push_str("stray");
        }
    }
    doc.push_str("</PPSPTrackerProtocol>\n");
    // The flat path runs under the differential assertion for every limit it depends on.
    let _ = decode(doc.as_bytes(), &Limits::default());
    let shallow = Limits {
        max_depth: 1,
        ..Limits::default()
    };
    let _ = decode(doc.as_bytes(), &shallow);
});
