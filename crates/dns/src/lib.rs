//! DNS messages on the wire (RFC 1035, SRV from RFC 2782, EDNS0's OPT from RFC 6891): the
//! queries an authoritative responder reads and the answers it writes, and a decoder of
//! answers for its tests. No dependencies; nothing here panics on any input.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

pub const TYPE_A: u16 = 1;
pub const TYPE_NS: u16 = 2;
pub const TYPE_SOA: u16 = 6;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_SRV: u16 = 33;
pub const TYPE_OPT: u16 = 41;
pub const TYPE_ANY: u16 = 255;
pub const CLASS_IN: u16 = 1;

/// The UDP payload size this responder advertises in its OPT record.
const EDNS_SIZE: u16 = 1232;
const MAX_NAME: usize = 255;
const MAX_LABEL: usize = 63;
/// Compression pointers followed in one name, at most (a loop never ends otherwise).
const MAX_JUMPS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rcode {
    #[default]
    NoError = 0,
    FormErr = 1,
    ServFail = 2,
    NxDomain = 3,
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
    /// Lowercased, labels joined by `.`, no trailing dot; empty for the root.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// The UDP payload size of the query's OPT record, when it had one.
    pub edns_udp_size: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    TooShort,
    /// The QR bit is set: an answer, not a query.
    NotAQuery,
    /// Not exactly one question.
    QuestionCount(u16),
    BadName(&'static str),
    Truncated,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::TooShort => write!(f, "shorter than a DNS header"),
            ParseError::NotAQuery => write!(f, "not a query (QR is set)"),
            ParseError::QuestionCount(n) => write!(f, "{n} questions (one is answered)"),
            ParseError::BadName(why) => write!(f, "bad name: {why}"),
            ParseError::Truncated => write!(f, "the message ends inside a field"),
        }
    }
}

impl std::error::Error for ParseError {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
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
    pub name: String,
    pub ttl: u32,
    pub data: RData,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    pub rcode: Rcode,
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additional: Vec<Record>,
}

/// An answer as a client decodes it (A, AAAA, SRV and SOA records; others are skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedResponse {
    pub id: u16,
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
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        let end = self.pos.checked_add(n).ok_or(ParseError::Truncated)?;
        let out = self.msg.get(self.pos..end).ok_or(ParseError::Truncated)?;
        self.pos = end;
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, ParseError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, ParseError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A name at the position, following compression pointers; the position moves past
    /// the name as written (its first pointer included).
    fn name(&mut self) -> Result<String, ParseError> {
        let mut labels: Vec<String> = Vec::new();
        let mut len = 0usize;
        let mut at = self.pos;
        let mut resume = None;
        let mut jumps = 0;
        loop {
            let b = *self.msg.get(at).ok_or(ParseError::Truncated)?;
            match b & 0xC0 {
                0x00 if b == 0 => {
                    at += 1;
                    break;
                }
                0x00 => {
                    let n = usize::from(b);
                    let label = self.msg.get(at + 1..at + 1 + n).ok_or(ParseError::Truncated)?;
                    len += n + 1;
                    if len > MAX_NAME {
                        return Err(ParseError::BadName("longer than 255 bytes"));
                    }
                    labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
                    at += 1 + n;
                }
                0xC0 => {
                    let low = *self.msg.get(at + 1).ok_or(ParseError::Truncated)?;
                    let target = usize::from(u16::from_be_bytes([b & 0x3F, low]));
                    jumps += 1;
                    if jumps > MAX_JUMPS || target >= at {
                        // Pointers go backwards; anything else may loop.
                        return Err(ParseError::BadName("a compression pointer that does not point back"));
                    }
                    resume.get_or_insert(at + 2);
                    at = target;
                }
                _ => return Err(ParseError::BadName("a reserved label type")),
            }
        }
        self.pos = resume.unwrap_or(at);
        Ok(labels.join("."))
    }
}

/// The 16-bit id of a message of at least 2 bytes, so a malformed query can still be
/// answered with FORMERR.
pub fn message_id(msg: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.first()?, *msg.get(1)?]))
}

/// Parses a query: its header, its one question, and an OPT record in its additional
/// section.
pub fn parse_query(msg: &[u8]) -> Result<Query, ParseError> {
    if msg.len() < 12 {
        return Err(ParseError::TooShort);
    }
    let mut r = Reader { msg, pos: 0 };
    let id = r.u16()?;
    let flags = r.u16()?;
    if flags & 0x8000 != 0 {
        return Err(ParseError::NotAQuery);
    }
    let qd = r.u16()?;
    let an = r.u16()?;
    let ns = r.u16()?;
    let ar = r.u16()?;
    if qd != 1 {
        return Err(ParseError::QuestionCount(qd));
    }
    let name = r.name()?;
    let qtype = r.u16()?;
    let qclass = r.u16()?;
    let mut edns_udp_size = None;
    for i in 0..(u32::from(an) + u32::from(ns) + u32::from(ar)) {
        r.name()?;
        let rtype = r.u16()?;
        let class = r.u16()?;
        r.u32()?;
        let len = r.u16()?;
        r.bytes(usize::from(len))?;
        if rtype == TYPE_OPT && i >= u32::from(an) + u32::from(ns) {
            edns_udp_size = Some(class);
        }
    }
    Ok(Query {
        id,
        opcode: ((flags >> 11) & 0x0F) as u8,
        recursion_desired: flags & 0x0100 != 0,
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

/// Writes a message, compressing names against those already written.
struct Writer {
    out: Vec<u8>,
    /// Where each name suffix already written starts.
    names: HashMap<String, u16>,
}

impl Writer {
    fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    fn name(&mut self, name: &str) {
        let name = name.trim_end_matches('.');
        let labels: Vec<&str> = if name.is_empty() {
            Vec::new()
        } else {
            name.split('.').collect()
        };
        for i in 0..labels.len() {
            let suffix = labels[i..].join(".").to_ascii_lowercase();
            if let Some(&at) = self.names.get(&suffix) {
                self.u16(0xC000 | at);
                return;
            }
            if let Ok(at) = u16::try_from(self.out.len()) {
                if at < 0x4000 {
                    self.names.insert(suffix, at);
                }
            }
            let label = &labels[i].as_bytes()[..labels[i].len().min(MAX_LABEL)];
            self.out.push(label.len() as u8);
            self.out.extend_from_slice(label);
        }
        self.out.push(0);
    }

    fn record(&mut self, rec: &Record) {
        self.name(&rec.name);
        self.u16(rec.data.rtype());
        self.u16(CLASS_IN);
        self.u32(rec.ttl);
        let len_at = self.out.len();
        self.u16(0);
        match &rec.data {
            RData::A(ip) => self.out.extend_from_slice(&ip.octets()),
            RData::Aaaa(ip) => self.out.extend_from_slice(&ip.octets()),
            RData::Srv {
                priority,
                weight,
                port,
                target,
            } => {
                self.u16(*priority);
                self.u16(*weight);
                self.u16(*port);
                // RFC 2782: the target is not compressed.
                let names = std::mem::take(&mut self.names);
                self.name(target);
                self.names = names;
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
                self.name(mname);
                self.name(rname);
                for v in [serial, refresh, retry, expire, minimum] {
                    self.u32(*v);
                }
            }
        }
        let len = (self.out.len() - len_at - 2) as u16;
        self.out[len_at..len_at + 2].copy_from_slice(&len.to_be_bytes());
    }
}

fn header(id: u16, q: Option<&Query>, rcode: Rcode, aa: bool, tc: bool, counts: [u16; 4]) -> Vec<u8> {
    let mut flags: u16 = 0x8000;
    if let Some(q) = q {
        flags |= u16::from(q.opcode & 0x0F) << 11;
        if q.recursion_desired {
            flags |= 0x0100;
        }
    }
    if aa {
        flags |= 0x0400;
    }
    if tc {
        flags |= 0x0200;
    }
    flags |= rcode as u16;
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    for c in counts {
        out.extend_from_slice(&c.to_be_bytes());
    }
    out
}

fn encode(q: &Query, r: &Response, answers: usize, authority: usize, additional: usize, tc: bool) -> Vec<u8> {
    let opt = q.edns_udp_size.is_some();
    let counts = [1, answers as u16, authority as u16, additional as u16 + u16::from(opt)];
    let mut w = Writer {
        out: header(q.id, Some(q), r.rcode, r.authoritative, tc, counts),
        names: HashMap::new(),
    };
    w.name(&q.name);
    w.u16(q.qtype);
    w.u16(q.qclass);
    let records = r.answers[..answers]
        .iter()
        .chain(&r.authority[..authority])
        .chain(&r.additional[..additional]);
    for rec in records {
        w.record(rec);
    }
    if opt {
        // Root name, OPT, our UDP size, extended rcode and flags 0, no options.
        w.out.push(0);
        w.u16(TYPE_OPT);
        w.u16(EDNS_SIZE);
        w.u32(0);
        w.u16(0);
    }
    w.out
}

/// The answer to `q`: its id and opcode, RD copied, the question echoed, then the
/// sections, names compressed; an OPT record when the query had one. Past `max_len`
/// (at least 512) whole records are dropped from the end — additional first — and TC is
/// set when an answer or authority record had to go.
pub fn encode_response(q: &Query, r: &Response, max_len: usize) -> Vec<u8> {
    let max_len = max_len.max(512);
    let (mut an, mut ns, mut ar) = (r.answers.len(), r.authority.len(), r.additional.len());
    loop {
        let tc = an < r.answers.len() || ns < r.authority.len();
        let out = encode(q, r, an, ns, ar, tc);
        if out.len() <= max_len || an + ns + ar == 0 {
            return out;
        }
        if ar > 0 {
            ar -= 1;
        } else if ns > 0 {
            ns -= 1;
        } else {
            an -= 1;
        }
    }
}

/// A header-only answer with `rcode` (the question echoed when known), for malformed
/// queries (FORMERR), unsupported opcodes (NOTIMP) and refusals.
pub fn encode_error(id: u16, q: Option<&Query>, rcode: Rcode) -> Vec<u8> {
    let mut out = header(id, q, rcode, false, false, [u16::from(q.is_some()), 0, 0, 0]);
    if let Some(q) = q {
        let mut w = Writer {
            out,
            names: HashMap::new(),
        };
        w.name(&q.name);
        w.u16(q.qtype);
        w.u16(q.qclass);
        out = w.out;
    }
    out
}

/// A query for `name` (RD set), with an OPT record advertising `edns` when given.
pub fn build_query(id: u16, name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
    let mut w = Writer {
        out: Vec::new(),
        names: HashMap::new(),
    };
    w.u16(id);
    w.u16(0x0100);
    for c in [1, 0, 0, u16::from(edns.is_some())] {
        w.u16(c);
    }
    w.name(name);
    w.u16(qtype);
    w.u16(CLASS_IN);
    if let Some(size) = edns {
        w.out.push(0);
        w.u16(TYPE_OPT);
        w.u16(size);
        w.u32(0);
        w.u16(0);
    }
    w.out
}

/// Decodes an answer: its header and its A, AAAA, SRV and SOA records.
pub fn parse_response(msg: &[u8]) -> Result<ParsedResponse, ParseError> {
    if msg.len() < 12 {
        return Err(ParseError::TooShort);
    }
    let mut r = Reader { msg, pos: 0 };
    let id = r.u16()?;
    let flags = r.u16()?;
    let counts = [r.u16()?, r.u16()?, r.u16()?, r.u16()?];
    for _ in 0..counts[0] {
        r.name()?;
        r.bytes(4)?;
    }
    let mut sections: [Vec<Record>; 3] = Default::default();
    for (section, count) in sections.iter_mut().zip(&counts[1..]) {
        for _ in 0..*count {
            let name = r.name()?;
            let rtype = r.u16()?;
            let _class = r.u16()?;
            let ttl = r.u32()?;
            let len = usize::from(r.u16()?);
            let end = r.pos + len;
            let data = match rtype {
                TYPE_A if len == 4 => {
                    let b = r.bytes(4)?;
                    Some(RData::A(Ipv4Addr::new(b[0], b[1], b[2], b[3])))
                }
                TYPE_AAAA if len == 16 => {
                    let b: [u8; 16] = r.bytes(16)?.try_into().map_err(|_| ParseError::Truncated)?;
                    Some(RData::Aaaa(Ipv6Addr::from(b)))
                }
                TYPE_SRV => Some(RData::Srv {
                    priority: r.u16()?,
                    weight: r.u16()?,
                    port: r.u16()?,
                    target: r.name()?,
                }),
                TYPE_SOA => Some(RData::Soa {
                    mname: r.name()?,
                    rname: r.name()?,
                    serial: r.u32()?,
                    refresh: r.u32()?,
                    retry: r.u32()?,
                    expire: r.u32()?,
                    minimum: r.u32()?,
                }),
                _ => None,
            };
            if r.pos > end || end > msg.len() {
                return Err(ParseError::Truncated);
            }
            r.pos = end;
            if let Some(data) = data {
                section.push(Record { name, ttl, data });
            }
        }
    }
    let [answers, authority, additional] = sections;
    Ok(ParsedResponse {
        id,
        rcode: (flags & 0x000F) as u8,
        truncated: flags & 0x0200 != 0,
        authoritative: flags & 0x0400 != 0,
        answers,
        authority,
        additional,
    })
}
