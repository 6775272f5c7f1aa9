//! DNS messages on the wire (RFC 1035, SRV from RFC 2782, EDNS0's OPT from RFC 6891): the
//! queries an authoritative responder reads and the answers it writes, and a decoder of
//! answers for its tests. No dependencies; nothing here panics on any input.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Record type A: an IPv4 address (RFC 1035).
pub const TYPE_A: u16 = 1;
/// Record type NS: a zone's name server (RFC 1035).
pub const TYPE_NS: u16 = 2;
/// Record type SOA: the start of a zone of authority (RFC 1035).
pub const TYPE_SOA: u16 = 6;
/// Record type AAAA: an IPv6 address (RFC 3596).
pub const TYPE_AAAA: u16 = 28;
/// Record type SRV: a service's target host and port (RFC 2782).
pub const TYPE_SRV: u16 = 33;
/// Pseudo-record type OPT: EDNS0 (RFC 6891).
pub const TYPE_OPT: u16 = 41;
/// Query type ANY (`*`): records of every type.
pub const TYPE_ANY: u16 = 255;
/// Class IN, the Internet.
pub const CLASS_IN: u16 = 1;

/// The UDP payload size this responder advertises in its OPT record.
const EDNS_SIZE: u16 = 1232;
/// A name's length on the wire, length bytes and the root's included (RFC 1035 2.3.4).
const MAX_NAME: usize = 255;
const MAX_LABEL: usize = 63;
/// Compression pointers followed in one name, at most; a name has at most 127 labels.
const MAX_JUMPS: usize = 128;
/// An OPT record without options: root name, type, class, TTL, RDLENGTH.
const OPT_LEN: usize = 11;

const QR: u16 = 0x8000;
const AA: u16 = 0x0400;
const TC: u16 = 0x0200;
const RD: u16 = 0x0100;

/// A response code (RFC 1035 4.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rcode {
    #[default]
    NoError = 0,
    /// The query could not be read.
    FormErr = 1,
    ServFail = 2,
    /// The name does not exist.
    NxDomain = 3,
    /// The opcode is not supported.
    NotImp = 4,
    Refused = 5,
}

/// A query's one question, and what of its header and OPT record an answer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    /// 0: a standard query.
    pub opcode: u8,
    pub recursion_desired: bool,
    /// Lowercased ASCII, labels joined by `.`, no trailing dot; empty for the root.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// The UDP payload size of the query's OPT record, when it had one.
    pub edns_udp_size: Option<u16>,
}

/// Why a message could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Shorter than the 12-byte header.
    TooShort,
    /// The QR bit is set: an answer, not a query.
    NotAQuery,
    /// Not exactly one question.
    QuestionCount(u16),
    /// A name that is not well-formed, and why.
    BadName(&'static str),
    /// A field runs past the end of the message or of its record's data.
    Truncated,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::TooShort => write!(f, "shorter than a DNS header"),
            ParseError::NotAQuery => write!(f, "not a query (QR is set)"),
            ParseError::QuestionCount(n) => write!(f, "{n} questions (one is answered)"),
            ParseError::BadName(why) => write!(f, "bad name: {why}"),
            ParseError::Truncated => write!(f, "a field runs past the end of the message or its record"),
        }
    }
}

impl std::error::Error for ParseError {}

/// The data of a record of one of the types this crate writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    /// RFC 2782; the target is never compressed.
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    Soa {
        mname: String,
        rname: String,
        serial: u32,
        refresh: u32,
        retry: u32,
        expire: u32,
        minimum: u32,
    },
}

impl RData {
    fn rtype(&self) -> u16 {
        match self {
            RData::A(_) => TYPE_A,
            RData::Aaaa(_) => TYPE_AAAA,
            RData::Srv { .. } => TYPE_SRV,
            RData::Soa { .. } => TYPE_SOA,
        }
    }
}

/// A resource record of class IN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Labels joined by `.` (a trailing dot is allowed when writing).
    pub name: String,
    pub ttl: u32,
    pub data: RData,
}

/// What an answer says besides the question: its code, AA flag and sections.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    pub rcode: Rcode,
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additional: Vec<Record>,
}

/// An answer as a client decodes it (A, AAAA, SRV and SOA records of class IN; others,
/// OPT among them, are skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedResponse {
    pub id: u16,
    /// The header's 4-bit RCODE.
    pub rcode: u8,
    pub truncated: bool,
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additional: Vec<Record>,
}

/// Reads big-endian fields from a message, failing past its end.
struct Reader<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader past the header, with the header's id, flags and four counts.
    fn header(msg: &'a [u8]) -> Result<(Self, u16, u16, [u16; 4]), ParseError> {
        if msg.len() < 12 {
            return Err(ParseError::TooShort);
        }
        let mut r = Reader { msg, pos: 0 };
        let (id, flags) = (r.u16()?, r.u16()?);
        let counts = [r.u16()?, r.u16()?, r.u16()?, r.u16()?];
        Ok((r, id, flags, counts))
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        let end = self.pos.checked_add(n).ok_or(ParseError::Truncated)?;
        let out = self.msg.get(self.pos..end).ok_or(ParseError::Truncated)?;
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ParseError> {
        self.bytes(N)?.try_into().map_err(|_| ParseError::Truncated)
    }

    fn u16(&mut self) -> Result<u16, ParseError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, ParseError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// A name at the position, lowercased, following compression pointers (each to an
    /// earlier offset, so none loops); the position moves past the name as written.
    fn name(&mut self) -> Result<String, ParseError> {
        let mut name = String::new();
        let mut wire = 1; // the root's length byte
        let mut at = self.pos;
        let mut resume = None;
        let mut jumps = 0;
        loop {
            let b = *self.msg.get(at).ok_or(ParseError::Truncated)?;
            match b & 0xC0 {
                0x00 if b == 0 => break,
                0x00 => {
                    let n = usize::from(b);
                    let label = self.msg.get(at + 1..at + 1 + n).ok_or(ParseError::Truncated)?;
                    wire += 1 + n;
                    if wire > MAX_NAME {
                        return Err(ParseError::BadName("longer than 255 bytes"));
                    }
                    if label.iter().any(|&c| !c.is_ascii() || c == b'.') {
                        return Err(ParseError::BadName("a label with a dot or a byte that is not ASCII"));
                    }
                    if !name.is_empty() {
                        name.push('.');
                    }
                    name.extend(label.iter().map(|c| char::from(c.to_ascii_lowercase())));
                    at += 1 + n;
                }
                0xC0 => {
                    let low = *self.msg.get(at + 1).ok_or(ParseError::Truncated)?;
                    let target = usize::from(u16::from_be_bytes([b & 0x3F, low]));
                    jumps += 1;
                    if jumps > MAX_JUMPS || target >= at {
                        return Err(ParseError::BadName("a compression pointer that does not point back"));
                    }
                    resume.get_or_insert(at + 2);
                    at = target;
                }
                _ => {
                    return Err(ParseError::BadName(
                        "a label longer than 63 bytes (or of a reserved type)",
                    ))
                }
            }
        }
        self.pos = resume.unwrap_or(at + 1);
        Ok(name)
    }

    /// A resource record: `Some` for A, AAAA, SRV and SOA records of class IN, `None` for
    /// others (skipped); its data must be exactly RDLENGTH long.
    fn record(&mut self) -> Result<Option<Record>, ParseError> {
        let name = self.name()?;
        let (rtype, class, ttl) = (self.u16()?, self.u16()?, self.u32()?);
        let len = usize::from(self.u16()?);
        let start = self.pos;
        self.bytes(len)?;
        let end = self.pos;
        self.pos = start;
        let data = match rtype {
            _ if class != CLASS_IN => None,
            TYPE_A => Some(RData::A(Ipv4Addr::from(self.array::<4>()?))),
            TYPE_AAAA => Some(RData::Aaaa(Ipv6Addr::from(self.array::<16>()?))),
            TYPE_SRV => Some(RData::Srv {
                priority: self.u16()?,
                weight: self.u16()?,
                port: self.u16()?,
                target: self.name()?,
            }),
            TYPE_SOA => Some(RData::Soa {
                mname: self.name()?,
                rname: self.name()?,
                serial: self.u32()?,
                refresh: self.u32()?,
                retry: self.u32()?,
                expire: self.u32()?,
                minimum: self.u32()?,
            }),
            _ => None,
        };
        if data.is_none() {
            self.pos = end;
        } else if self.pos != end {
            return Err(ParseError::Truncated);
        }
        Ok(data.map(|data| Record { name, ttl, data }))
    }
}

/// The 16-bit id of a message of at least 2 bytes, so a malformed query can still be
/// answered with FORMERR.
pub fn message_id(msg: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.first()?, *msg.get(1)?]))
}

/// Parses a query: its header, its one question, and the first OPT record of its
/// additional section (other records are skipped). Names are lowercased; a label must be
/// ASCII without a dot, at most 63 bytes, and a name at most 255 bytes on the wire.
pub fn parse_query(msg: &[u8]) -> Result<Query, ParseError> {
    let (mut r, id, flags, [qd, an, ns, ar]) = Reader::header(msg)?;
    if flags & QR != 0 {
        return Err(ParseError::NotAQuery);
    }
    if qd != 1 {
        return Err(ParseError::QuestionCount(qd));
    }
    let name = r.name()?;
    let (qtype, qclass) = (r.u16()?, r.u16()?);
    let mut edns_udp_size = None;
    let before_additional = u32::from(an) + u32::from(ns);
    for i in 0..before_additional + u32::from(ar) {
        r.name()?;
        let (rtype, class) = (r.u16()?, r.u16()?);
        r.u32()?;
        let len = r.u16()?;
        r.bytes(usize::from(len))?;
        if rtype == TYPE_OPT && i >= before_additional {
            edns_udp_size.get_or_insert(class);
        }
    }
    Ok(Query {
        id,
        opcode: ((flags >> 11) & 0x0F) as u8,
        recursion_desired: flags & RD != 0,
        name,
        qtype,
        qclass,
        edns_udp_size,
    })
}

/// The UDP size limit of an answer to `q`: 512 without EDNS, else the advertised size
/// within 512..=1232.
pub fn udp_limit(q: &Query) -> usize {
    q.edns_udp_size
        .map_or(512, |size| usize::from(size.clamp(512, EDNS_SIZE)))
}

/// The labels of a name written as text (a trailing dot allowed), if it can go on the
/// wire: labels of 1 to 63 bytes, 255 bytes in all.
fn labels(name: &str) -> Option<Vec<&str>> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Some(Vec::new());
    }
    let labels: Vec<&str> = name.split('.').collect();
    let fits = name.len() + 2 <= MAX_NAME && labels.iter().all(|l| (1..=MAX_LABEL).contains(&l.len()));
    fits.then_some(labels)
}

/// Writes a message, compressing names against those already written.
struct Writer {
    out: Vec<u8>,
    /// Where each name suffix already written starts, by its lowercased text.
    names: HashMap<String, u16>,
}

impl Writer {
    /// A message whose header has `id` and `flags`, its counts to be set by `finish`.
    fn new(id: u16, flags: u16) -> Self {
        let mut w = Writer {
            out: Vec::with_capacity(512),
            names: HashMap::new(),
        };
        w.u16(id);
        w.u16(flags);
        w.out.extend_from_slice(&[0; 8]);
        w
    }

    fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    /// Writes `name`, as a pointer to an earlier copy of it or of a suffix when `compress`;
    /// its new suffixes are remembered either way. False, with nothing written, for a name
    /// that cannot go on the wire.
    fn name(&mut self, name: &str, compress: bool) -> bool {
        let Some(labels) = labels(name) else {
            return false;
        };
        for (i, label) in labels.iter().enumerate() {
            let suffix = labels[i..].join(".").to_ascii_lowercase();
            if let Some(&at) = self.names.get(&suffix).filter(|_| compress) {
                self.u16(0xC000 | at);
                return true;
            }
            if let Ok(at @ 0..0x4000) = u16::try_from(self.out.len()) {
                self.names.entry(suffix).or_insert(at);
            }
            self.out.push(label.len() as u8);
            self.out.extend_from_slice(label.as_bytes());
        }
        self.out.push(0);
        true
    }

    /// The question; a name no parser produced, one that cannot be written, becomes the root.
    fn question(&mut self, name: &str, qtype: u16, qclass: u16) {
        if !self.name(name, true) {
            self.out.push(0);
        }
        self.u16(qtype);
        self.u16(qclass);
    }

    /// Forgets everything from `len` on.
    fn rewind(&mut self, len: usize) {
        self.out.truncate(len);
        self.names.retain(|_, at| usize::from(*at) < len);
    }

    /// Writes a record; false, with nothing written, when one of its names cannot be.
    fn record(&mut self, rec: &Record) -> bool {
        let start = self.out.len();
        let written = self.try_record(rec);
        if !written {
            self.rewind(start);
        }
        written
    }

    fn try_record(&mut self, rec: &Record) -> bool {
        if !self.name(&rec.name, true) {
            return false;
        }
        self.u16(rec.data.rtype());
        self.u16(CLASS_IN);
        self.u32(rec.ttl);
        let len_at = self.out.len();
        self.u16(0);
        let written = match &rec.data {
            RData::A(ip) => {
                self.out.extend_from_slice(&ip.octets());
                true
            }
            RData::Aaaa(ip) => {
                self.out.extend_from_slice(&ip.octets());
                true
            }
            RData::Srv {
                priority,
                weight,
                port,
                target,
            } => {
                self.u16(*priority);
                self.u16(*weight);
                self.u16(*port);
                // RFC 2782: not compressed (later names may still point into it).
                self.name(target, false)
            }
            RData::Soa {
                mname,
                rname,
                serial,
                refresh,
                retry,
                expire,
                minimum,
            } => {
                let names = self.name(mname, true) && self.name(rname, true);
                for v in [serial, refresh, retry, expire, minimum] {
                    self.u32(*v);
                }
                names
            }
        };
        // At most 2 names of 255 bytes and 20 more: it fits.
        let len = u16::try_from(self.out.len() - len_at - 2).unwrap_or(u16::MAX);
        self.out[len_at..len_at + 2].copy_from_slice(&len.to_be_bytes());
        written
    }

    /// An OPT record without options advertising `size`.
    fn opt(&mut self, size: u16) {
        self.out.push(0);
        self.u16(TYPE_OPT);
        self.u16(size);
        self.u32(0); // extended RCODE, version 0, no DO bit
        self.u16(0);
    }

    /// The message, with the header's section counts (and TC when `truncated`).
    fn finish(mut self, counts: [u16; 4], truncated: bool) -> Vec<u8> {
        for (i, c) in counts.iter().enumerate() {
            self.out[4 + 2 * i..6 + 2 * i].copy_from_slice(&c.to_be_bytes());
        }
        if truncated {
            self.out[2] |= (TC >> 8) as u8;
        }
        self.out
    }
}

/// The flags of an answer to `q`: QR, its opcode and RD, AA as given, RA 0, `rcode`.
fn answer_flags(q: Option<&Query>, rcode: Rcode, authoritative: bool) -> u16 {
    let mut flags = QR | rcode as u16;
    if let Some(q) = q {
        flags |= u16::from(q.opcode & 0x0F) << 11;
        if q.recursion_desired {
            flags |= RD;
        }
    }
    if authoritative {
        flags |= AA;
    }
    flags
}

/// The answer to `q`: its id and opcode, RD copied, the question echoed, then the
/// sections, names compressed; an OPT record when the query had one. Records that would
/// take it past `max_len` (at least 512) are left out from the end — additional first —
/// and TC is set when an answer or authority record had to go. Records with a name that
/// cannot be written (an empty label, one over 63 bytes, a name over 255) are left out.
pub fn encode_response(q: &Query, r: &Response, max_len: usize) -> Vec<u8> {
    let opt = q.edns_udp_size.is_some();
    let room = max_len.max(512) - if opt { OPT_LEN } else { 0 };
    let mut w = Writer::new(q.id, answer_flags(Some(q), r.rcode, r.authoritative));
    w.question(&q.name, q.qtype, q.qclass);
    let mut counts = [1, 0, 0, 0];
    let mut truncated = false;
    // Names point only backwards, so the records that fit are the longest prefix of
    // answers, authority and additional that does: written once, the rest never.
    'sections: for (i, records) in [&r.answers, &r.authority, &r.additional].into_iter().enumerate() {
        for rec in records {
            let start = w.out.len();
            if !w.record(rec) {
                continue;
            }
            if w.out.len() > room || counts[i + 1] >= u16::MAX - 1 {
                w.rewind(start);
                truncated = i < 2;
                break 'sections;
            }
            counts[i + 1] += 1;
        }
    }
    if opt {
        w.opt(EDNS_SIZE);
        counts[3] += 1;
    }
    w.finish(counts, truncated)
}

/// A header-only answer with `rcode` (the question echoed when known), for malformed
/// queries (FORMERR), unsupported opcodes (NOTIMP) and refusals.
pub fn encode_error(id: u16, q: Option<&Query>, rcode: Rcode) -> Vec<u8> {
    let mut w = Writer::new(id, answer_flags(q, rcode, false));
    if let Some(q) = q {
        w.question(&q.name, q.qtype, q.qclass);
    }
    w.finish([u16::from(q.is_some()), 0, 0, 0], false)
}

/// A query of class IN for `name` (RD set, case kept), with an OPT record advertising
/// `edns` when given.
pub fn build_query(id: u16, name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
    let mut w = Writer::new(id, RD);
    w.question(name, qtype, CLASS_IN);
    if let Some(size) = edns {
        w.opt(size);
    }
    w.finish([1, 0, 0, u16::from(edns.is_some())], false)
}

/// Decodes an answer: its header and its A, AAAA, SRV and SOA records, names lowercased.
/// Fails on a malformed name or a record whose data is not its RDLENGTH.
pub fn parse_response(msg: &[u8]) -> Result<ParsedResponse, ParseError> {
    let (mut r, id, flags, counts) = Reader::header(msg)?;
    for _ in 0..counts[0] {
        r.name()?;
        r.bytes(4)?;
    }
    let mut sections: [Vec<Record>; 3] = Default::default();
    for (section, &count) in sections.iter_mut().zip(&counts[1..]) {
        for _ in 0..count {
            section.extend(r.record()?);
        }
    }
    let [answers, authority, additional] = sections;
    Ok(ParsedResponse {
        id,
        rcode: (flags & 0x000F) as u8,
        truncated: flags & TC != 0,
        authoritative: flags & AA != 0,
        answers,
        authority,
        additional,
    })
}
