//! Just enough MPEG transport stream (ISO/IEC 13818-1) parsing to find where a player can
//! start decoding.
//!
//! A live viewer joins a stream at an arbitrary byte: chunks are cut by size and time, not
//! at packet or picture boundaries. Handing a decoder that byte stream makes it print
//! errors until the next keyframe and its parameter sets come by, and some players give up.
//! [`TsScanner`] reads the stream as it arrives, finds the 188-byte packet grid, learns the
//! program's tables (PAT, then the PMT it names) and reports each *random-access point*:
//! the first packet of a video access unit that can be decoded on its own, known from
//!
//! * the adaptation field's `random_access_indicator` (§2.4.3.5), which most encoders set
//!   on keyframes, or
//! * the elementary stream itself: an H.264 IDR slice (NAL unit type 5), an H.265 IRAP
//!   picture (NAL unit types 16 to 21), or an MPEG-1/2 sequence header (start code `B3`).
//!
//! For a stream without video, the start of each packetized elementary stream (PES) packet of
//! its first stream is a random-access point. Everything here is synchronous and pure: the
//! caller pushes bytes and gets offsets back.

/// Size of one transport stream packet.
pub const PACKET_LEN: usize = 188;
const SYNC_BYTE: u8 = 0x47;
const PAT_PID: u16 = 0;
/// Bytes pushed without finding the packet grid before the input is declared not to be a
/// transport stream: a transport stream shows it within any four packets.
const SYNC_SEARCH_LIMIT: u64 = 4 * PACKET_LEN as u64;
/// Bytes pushed without a program association table before the input is declared not to
/// be a usable transport stream (encoders repeat the PAT every 100 ms or so).
const PAT_SEARCH_LIMIT: u64 = 1024 * 1024;
/// Elementary-stream bytes of one video PES examined for a random-access picture.
const PES_INSPECT_LIMIT: usize = 4096;

/// A place where a decoder can start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RandomAccessPoint {
    /// Offset in the pushed byte stream where output should start: the keyframe's first
    /// packet, or the PAT just before it when the program tables directly precede it.
    pub offset: u64,
    /// The program tables (PAT and PMT packets) to send before `offset`, when they do not
    /// directly precede the keyframe in the stream; `None` when they do.
    pub tables: Option<Vec<u8>>,
}

/// What the scanner knows about its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not enough input yet.
    Undecided,
    /// The input has the packet grid and program tables of a transport stream.
    TransportStream,
    /// No packet grid in the first four packets' worth of bytes, or no program association
    /// table in the first MiB.
    NotTransportStream,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Codec {
    H264,
    H265,
    Mpeg12,
    /// A video codec this parser does not look into: only the indicator flag counts.
    OtherVideo,
    /// No video in the program: every PES start of this stream is a starting point.
    Audio,
}

/// One video (or, without video, audio) PES being examined.
#[derive(Debug)]
struct PendingPes {
    /// Offset of the PES's first packet.
    offset: u64,
    /// Start of the elementary stream bytes collected so far.
    bytes: Vec<u8>,
    /// True once the PES header has been skipped.
    header_done: bool,
    /// Offset of the target stream's packet before this PES.
    previous: Option<u64>,
}

/// Incremental random-access point finder; see the module documentation.
#[derive(Debug, Default)]
pub struct TsScanner {
    /// Bytes of an incomplete packet (or of unsynchronised input) from the previous push.
    carry: Vec<u8>,
    /// Stream offset of `carry[0]`.
    carry_offset: u64,
    synced: bool,
    ever_synced: bool,
    pmt_pid: Option<u16>,
    /// The elementary stream watched for starting points, and its codec.
    target: Option<(u16, Codec)>,
    pat: Option<(u64, Vec<u8>)>,
    pmt: Option<(u64, Vec<u8>)>,
    /// Offset of the newest packet of the target stream.
    last_target_packet: Option<u64>,
    pending: Option<PendingPes>,
    found: Vec<RandomAccessPoint>,
}

impl TsScanner {
    /// A scanner at stream offset 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Total bytes pushed so far: the stream offset of the next byte to be pushed.
    pub fn offset(&self) -> u64 {
        self.carry_offset + self.carry.len() as u64
    }

    /// Whether the input looks like a transport stream.
    pub fn verdict(&self) -> Verdict {
        if self.pat.is_some() {
            Verdict::TransportStream
        } else if (!self.ever_synced && self.offset() >= SYNC_SEARCH_LIMIT)
            || self.offset() >= PAT_SEARCH_LIMIT
        {
            Verdict::NotTransportStream
        } else {
            Verdict::Undecided
        }
    }

    /// The program tables seen last (PAT packet then PMT packet), once both are known.
    pub fn tables(&self) -> Option<Vec<u8>> {
        let (_, pat) = self.pat.as_ref()?;
        let (_, pmt) = self.pmt.as_ref()?;
        let mut out = Vec::with_capacity(2 * PACKET_LEN);
        out.extend_from_slice(pat);
        out.extend_from_slice(pmt);
        Some(out)
    }

    /// Scans the next `data` of the stream; returns the random-access points completed by
    /// it, oldest first.
    pub fn push(&mut self, data: &[u8]) -> Vec<RandomAccessPoint> {
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(data);
        let base = self.carry_offset;
        let mut at = 0usize;
        while buf.len() - at >= PACKET_LEN {
            if !self.synced {
                match find_sync(&buf[at..]) {
                    Some(skip) => {
                        at += skip;
                        self.synced = true;
                        self.ever_synced = true;
                        // Tables and partial PES from before the gap no longer describe
                        // what follows it.
                        self.pending = None;
                        continue;
                    }
                    None => {
                        // Keep the tail that might still begin a packet grid.
                        at = buf.len().saturating_sub(PACKET_LEN).max(at);
                        break;
                    }
                }
            }
            let packet = &buf[at..at + PACKET_LEN];
            if packet[0] != SYNC_BYTE {
                self.synced = false;
                continue;
            }
            self.packet(base + at as u64, packet);
            at += PACKET_LEN;
        }
        self.carry = buf.split_off(at);
        self.carry_offset = base + at as u64;
        std::mem::take(&mut self.found)
    }

    fn packet(&mut self, offset: u64, packet: &[u8]) {
        let header = PacketHeader::parse(packet);
        if header.transport_error {
            return;
        }
        let Some(payload) = packet.get(header.payload_start..) else {
            return;
        };
        if header.pid == PAT_PID {
            if header.unit_start && self.read_pat(payload) {
                self.pat = Some((offset, packet.to_vec()));
            }
            return;
        }
        if Some(header.pid) == self.pmt_pid {
            if header.unit_start && self.read_pmt(payload) {
                self.pmt = Some((offset, packet.to_vec()));
            }
            return;
        }
        let Some((pid, codec)) = self.target else {
            return;
        };
        if header.pid != pid {
            return;
        }
        let previous_packet = self.last_target_packet.replace(offset);
        if header.unit_start {
            // A new access unit: whatever was pending was not a starting point.
            self.pending = None;
            if header.random_access || codec == Codec::Audio {
                self.found(offset, previous_packet);
                return;
            }
            if codec == Codec::OtherVideo {
                return;
            }
            self.pending = Some(PendingPes {
                offset,
                bytes: Vec::new(),
                header_done: false,
                previous: previous_packet,
            });
        }
        let Some(pending) = self.pending.as_mut() else {
            return;
        };
        if !header.has_payload {
            return;
        }
        pending.bytes.extend_from_slice(payload);
        if !pending.header_done {
            // 00 00 01, stream_id, PES_packet_length (2), flags (2), header_data_length.
            let Some(&header_len) = pending.bytes.get(8) else {
                return;
            };
            let skip = 9 + usize::from(header_len);
            if pending.bytes.len() < skip {
                return;
            }
            if !pending.bytes.starts_with(&[0, 0, 1]) {
                self.pending = None;
                return;
            }
            pending.bytes.drain(..skip);
            pending.header_done = true;
        }
        let (start, before) = (pending.offset, pending.previous);
        match classify(codec, &pending.bytes) {
            Picture::RandomAccess => {
                self.pending = None;
                self.found(start, before);
            }
            Picture::Other => self.pending = None,
            Picture::Unknown if pending.bytes.len() >= PES_INSPECT_LIMIT => self.pending = None,
            Picture::Unknown => {}
        }
    }

    /// Records a starting point at the packet at `offset`; `previous_target` is the offset
    /// of the target stream's packet before it.
    fn found(&mut self, offset: u64, previous_target: Option<u64>) {
        let (Some((pat_at, _)), Some((pmt_at, _))) = (&self.pat, &self.pmt) else {
            // Without tables a decoder cannot find the stream: not usable yet.
            return;
        };
        let since = previous_target.unwrap_or(0);
        let tables_adjacent = *pat_at < offset
            && *pmt_at < offset
            && (previous_target.is_none() || (*pat_at > since && *pmt_at > since));
        let point = if tables_adjacent {
            RandomAccessPoint {
                offset: (*pat_at).min(*pmt_at),
                tables: None,
            }
        } else {
            RandomAccessPoint {
                offset,
                tables: self.tables(),
            }
        };
        self.found.push(point);
    }

    /// Reads a PAT section; true when it names a program map.
    fn read_pat(&mut self, payload: &[u8]) -> bool {
        let Some(section) = section(payload, 0x00) else {
            return false;
        };
        // After the 5 bytes of table header: 4-byte entries, program_number then PID.
        let entries = section.get(5..).unwrap_or_default();
        for entry in entries.chunks_exact(4) {
            let program = u16::from_be_bytes([entry[0], entry[1]]);
            if program != 0 {
                let pid = u16::from_be_bytes([entry[2], entry[3]]) & 0x1fff;
                if self.pmt_pid != Some(pid) {
                    self.pmt_pid = Some(pid);
                    self.pmt = None;
                    self.target = None;
                }
                return true;
            }
        }
        false
    }

    /// Reads a PMT section; true when it lists an elementary stream.
    fn read_pmt(&mut self, payload: &[u8]) -> bool {
        let Some(section) = section(payload, 0x02) else {
            return false;
        };
        // program_number (2), version (1), section numbers (2), PCR PID (2),
        // program_info_length (2), descriptors, then the streams.
        let Some(info) = section.get(7..9) else {
            return false;
        };
        let info_len = usize::from(u16::from_be_bytes([info[0], info[1]]) & 0x0fff);
        let mut streams = section.get(9 + info_len..).unwrap_or_default();
        let mut first_other: Option<u16> = None;
        let mut video: Option<(u16, Codec)> = None;
        while streams.len() >= 5 {
            let stream_type = streams[0];
            let pid = u16::from_be_bytes([streams[1], streams[2]]) & 0x1fff;
            let es_info = usize::from(u16::from_be_bytes([streams[3], streams[4]]) & 0x0fff);
            let codec = match stream_type {
                0x1b => Some(Codec::H264),
                0x24 => Some(Codec::H265),
                0x01 | 0x02 => Some(Codec::Mpeg12),
                0x10 | 0x20 | 0x33 | 0xd1 | 0xea => Some(Codec::OtherVideo),
                _ => None,
            };
            match codec {
                Some(codec) if video.is_none() => video = Some((pid, codec)),
                None if first_other.is_none() => first_other = Some(pid),
                _ => {}
            }
            streams = streams.get(5 + es_info..).unwrap_or_default();
        }
        let target = video.or(first_other.map(|pid| (pid, Codec::Audio)));
        if target.is_some() && target != self.target {
            self.target = target;
            self.pending = None;
            self.last_target_packet = None;
        }
        target.is_some()
    }
}

/// The fields of a packet header this parser uses.
struct PacketHeader {
    transport_error: bool,
    unit_start: bool,
    pid: u16,
    has_payload: bool,
    random_access: bool,
    payload_start: usize,
}

impl PacketHeader {
    /// `packet` is exactly [`PACKET_LEN`] bytes starting with the sync byte.
    fn parse(packet: &[u8]) -> Self {
        let transport_error = packet[1] & 0x80 != 0;
        let unit_start = packet[1] & 0x40 != 0;
        let pid = u16::from_be_bytes([packet[1], packet[2]]) & 0x1fff;
        let control = (packet[3] >> 4) & 0x03;
        let has_adaptation = control & 0x02 != 0;
        let has_payload = control & 0x01 != 0;
        let (random_access, payload_start) = if has_adaptation {
            let len = usize::from(packet[4]);
            let flags = if len > 0 { packet[5] } else { 0 };
            (flags & 0x40 != 0, 5 + len)
        } else {
            (false, 4)
        };
        Self {
            transport_error,
            unit_start,
            pid,
            has_payload: has_payload && payload_start < PACKET_LEN,
            random_access,
            payload_start: if has_payload {
                payload_start
            } else {
                PACKET_LEN
            },
        }
    }
}

/// The section of table `table_id` that starts in this payload (after the pointer field),
/// without its 3-byte header and its CRC; `None` when it does not fit in one packet.
fn section(payload: &[u8], table_id: u8) -> Option<&[u8]> {
    let pointer = usize::from(*payload.first()?);
    let table = payload.get(1 + pointer..)?;
    if *table.first()? != table_id {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([*table.get(1)?, *table.get(2)?]) & 0x0fff);
    // section_length counts the bytes after it, including the 4-byte CRC.
    let body = table.get(3..3 + length)?;
    body.get(..body.len().checked_sub(4)?)
}

/// Where the packet grid starts in `buf`: a sync byte with another one packet later (and a
/// third after that, when `buf` is long enough).
fn find_sync(buf: &[u8]) -> Option<usize> {
    (0..buf.len())
        .take_while(|&i| i + PACKET_LEN < buf.len())
        .find(|&i| (0..3).all(|k| buf.get(i + k * PACKET_LEN).is_none_or(|&b| b == SYNC_BYTE)))
}

enum Picture {
    RandomAccess,
    Other,
    Unknown,
}

/// Looks at the start of one access unit's elementary-stream bytes.
fn classify(codec: Codec, es: &[u8]) -> Picture {
    let mut i = 0usize;
    while let Some(pos) = es.get(i..).and_then(find_start_code) {
        let at = i + pos + 3;
        let Some(&code) = es.get(at) else {
            return Picture::Unknown;
        };
        match codec {
            Codec::H264 => match code & 0x1f {
                5 => return Picture::RandomAccess,
                1..=4 => return Picture::Other,
                _ => {}
            },
            Codec::H265 => match (code >> 1) & 0x3f {
                16..=21 => return Picture::RandomAccess,
                0..=9 => return Picture::Other,
                _ => {}
            },
            Codec::Mpeg12 => match code {
                0xb3 => return Picture::RandomAccess,
                0x00 => return Picture::Other,
                _ => {}
            },
            Codec::OtherVideo | Codec::Audio => return Picture::Other,
        }
        i = at;
    }
    Picture::Unknown
}

fn find_start_code(bytes: &[u8]) -> Option<usize> {
    bytes.windows(3).position(|w| w == [0, 0, 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet of `pid` carrying `payload` (padded with an adaptation field's stuffing).
    fn packet(pid: u16, unit_start: bool, random_access: bool, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![
            SYNC_BYTE,
            (u8::from(unit_start) << 6) | ((pid >> 8) as u8 & 0x1f),
            pid as u8,
            0,
        ];
        let room = PACKET_LEN - 4;
        let needs_af = random_access || payload.len() < room;
        if needs_af {
            p[3] = 0x30;
            let af_len = room - 1 - payload.len();
            p.push(af_len as u8);
            if af_len > 0 {
                p.push(if random_access { 0x40 } else { 0 });
                p.extend(std::iter::repeat_n(0xff, af_len - 1));
            }
        } else {
            p[3] = 0x10;
        }
        p.extend_from_slice(payload);
        assert_eq!(p.len(), PACKET_LEN);
        p
    }

    fn with_crc(mut section: Vec<u8>) -> Vec<u8> {
        // Parsing does not check the CRC; any 4 bytes do.
        section.extend_from_slice(&[0, 0, 0, 0]);
        section
    }

    fn pat(pmt_pid: u16) -> Vec<u8> {
        let body = [
            0,
            1,
            0xc1,
            0,
            0,
            0,
            1,
            0xe0 | (pmt_pid >> 8) as u8,
            pmt_pid as u8,
        ];
        let mut payload = vec![0, 0x00, 0xb0, (body.len() + 4) as u8];
        payload.extend(with_crc(body.to_vec()));
        packet(PAT_PID, true, false, &payload)
    }

    fn pmt(pmt_pid: u16, streams: &[(u8, u16)]) -> Vec<u8> {
        let mut body = vec![0, 1, 0xc1, 0, 0, 0xe1, 0x00, 0xf0, 0x00];
        for (stream_type, pid) in streams {
            body.extend_from_slice(&[*stream_type, 0xe0 | (pid >> 8) as u8, *pid as u8, 0xf0, 0]);
        }
        let mut payload = vec![0, 0x02, 0xb0, (body.len() + 4) as u8];
        payload.extend(with_crc(body));
        packet(pmt_pid, true, false, &payload)
    }

    fn pes(pid: u16, random_access: bool, es: &[u8]) -> Vec<u8> {
        let mut payload = vec![0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 5, 0x21, 0, 1, 0, 1];
        payload.extend_from_slice(es);
        packet(pid, true, random_access, &payload)
    }

    const IDR: &[u8] = &[
        0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x67, 0x42, 0, 0, 1, 0x65, 0x88,
    ];
    const NON_IDR: &[u8] = &[0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x41, 0x9a];

    #[test]
    fn finds_idr_after_tables_and_starts_at_the_pat() {
        let mut stream = Vec::new();
        stream.extend(pes(0x100, false, NON_IDR)); // before any tables: unusable
        stream.extend(pat(0x1000));
        stream.extend(pmt(0x1000, &[(0x1b, 0x100), (0x0f, 0x101)]));
        stream.extend(pes(0x100, false, IDR));
        stream.extend(pes(0x100, false, NON_IDR));
        let mut scanner = TsScanner::new();
        let points = scanner.push(&stream);
        assert_eq!(scanner.verdict(), Verdict::TransportStream);
        assert_eq!(
            points,
            vec![RandomAccessPoint {
                offset: PACKET_LEN as u64,
                tables: None
            }]
        );
    }

    #[test]
    fn distant_tables_are_repeated_and_split_input_gives_the_same_answer() {
        let mut stream = vec![0x12, 0x34, 0x56]; // garbage before the packet grid
        stream.extend(pat(0x1000));
        stream.extend(pmt(0x1000, &[(0x1b, 0x100)]));
        stream.extend(pes(0x100, false, IDR));
        stream.extend(pes(0x100, false, NON_IDR));
        stream.extend(pes(0x100, true, NON_IDR)); // flagged by the adaptation field
        let expected_tables = [pat(0x1000), pmt(0x1000, &[(0x1b, 0x100)])].concat();
        let whole = TsScanner::new().push(&stream);
        assert_eq!(whole.len(), 2);
        assert_eq!(whole[0].offset, 3, "tables right before the IDR");
        assert_eq!(whole[1].offset, 3 + 4 * PACKET_LEN as u64);
        assert_eq!(whole[1].tables.as_deref(), Some(&expected_tables[..]));
        for cut in [1usize, 7, 100, 188, 200, 377, 600] {
            let mut scanner = TsScanner::new();
            let mut points = Vec::new();
            for piece in stream.chunks(cut) {
                points.extend(scanner.push(piece));
            }
            assert_eq!(points, whole, "pieces of {cut} bytes");
            assert_eq!(scanner.offset(), stream.len() as u64);
        }
    }

    #[test]
    fn mpeg2_hevc_and_audio_only() {
        let seq = [0u8, 0, 1, 0xb3, 0x14, 0, 0, 1, 0x00, 0x00];
        let pic = [0u8, 0, 1, 0x00, 0x00, 0x0f];
        let mut s = [pat(0x20), pmt(0x20, &[(0x02, 0x44)])].concat();
        s.extend(pes(0x44, false, &pic));
        s.extend(pes(0x44, false, &seq));
        let points = TsScanner::new().push(&s);
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].offset, 3 * PACKET_LEN as u64);

        let irap = [0u8, 0, 1, 0x40, 0x01, 0, 0, 1, 0x26, 0x01]; // VPS, then IDR_W_RADL
        let trail = [0u8, 0, 1, 0x02, 0x01]; // TRAIL_R
        let mut s = [pat(0x20), pmt(0x20, &[(0x24, 0x44)])].concat();
        s.extend(pes(0x44, false, &trail));
        s.extend(pes(0x44, false, &irap));
        assert_eq!(TsScanner::new().push(&s).len(), 1);

        let mut s = [pat(0x20), pmt(0x20, &[(0x0f, 0x45)])].concat();
        s.extend(pes(0x45, false, &[0xff, 0xf1]));
        s.extend(pes(0x45, false, &[0xff, 0xf1]));
        assert_eq!(TsScanner::new().push(&s).len(), 2, "every audio PES start");
    }

    #[test]
    fn other_bytes_are_not_a_transport_stream() {
        let mut scanner = TsScanner::new();
        let text = b"rec 00000001 ..................\n".repeat(24);
        assert!(scanner.push(&text[..700]).is_empty());
        assert_eq!(scanner.verdict(), Verdict::Undecided);
        assert!(scanner.push(&text[700..]).is_empty());
        assert_eq!(
            scanner.verdict(),
            Verdict::NotTransportStream,
            "decided within 1 KiB"
        );
        // Truncated or nonsensical packets never panic.
        let mut scanner = TsScanner::new();
        let mut junk = vec![SYNC_BYTE; PACKET_LEN * 4];
        junk[3] = 0x20;
        junk[4] = 0xff;
        assert!(scanner.push(&junk).is_empty());
    }
}
