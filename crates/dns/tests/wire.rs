//! DNS messages: queries and answers round trip, the wire format is the RFC's, and no
//! input makes the parser panic.

use std::net::{Ipv4Addr, Ipv6Addr};

use flotilla_dns::*;

fn query(name: &str, qtype: u16, edns: Option<u16>) -> Query {
    parse_query(&build_query(0x1234, name, qtype, edns)).expect("a query")
}

fn a(name: &str, ip: [u8; 4]) -> Record {
    Record {
        name: name.into(),
        ttl: 5,
        data: RData::A(Ipv4Addr::from(ip)),
    }
}

fn srv(name: &str, port: u16, target: &str) -> Record {
    Record {
        name: name.into(),
        ttl: 5,
        data: RData::Srv {
            priority: 0,
            weight: 1,
            port,
            target: target.into(),
        },
    }
}

fn soa(zone: &str) -> Record {
    Record {
        name: zone.into(),
        ttl: 5,
        data: RData::Soa {
            mname: format!("ns.{zone}"),
            rname: format!("hostmaster.{zone}"),
            serial: 1,
            refresh: 60,
            retry: 10,
            expire: 600,
            minimum: 5,
        },
    }
}

/// A header with id 1, the given flags and counts.
fn header(flags: u16, counts: [u16; 4]) -> Vec<u8> {
    let mut m = vec![0, 1];
    m.extend_from_slice(&flags.to_be_bytes());
    for c in counts {
        m.extend_from_slice(&c.to_be_bytes());
    }
    m
}

/// `name` as uncompressed labels.
fn wire_name(labels: &[&[u8]]) -> Vec<u8> {
    let mut m = Vec::new();
    for l in labels {
        m.push(l.len() as u8);
        m.extend_from_slice(l);
    }
    m.push(0);
    m
}

#[test]
fn a_query_round_trips_lowercased() {
    let msg = build_query(0x1234, "WeB.Prod.Flotilla", TYPE_A, None);
    assert!(msg.windows(3).any(|w| w == b"WeB"), "the query keeps its case");
    assert_eq!(
        parse_query(&msg).expect("a query"),
        Query {
            id: 0x1234,
            opcode: 0,
            recursion_desired: true,
            name: "web.prod.flotilla".into(),
            qtype: TYPE_A,
            qclass: CLASS_IN,
            edns_udp_size: None,
        }
    );
    assert_eq!(query("", TYPE_SOA, None).name, "");
    assert_eq!(query("x.", TYPE_A, None).name, "x");
    assert_eq!(query("_8080._tcp.web.prod.flotilla", TYPE_SRV, None).qtype, TYPE_SRV);
}

#[test]
fn an_a_answer_is_the_rfcs_bytes() {
    let q = query("ab.c", TYPE_A, None);
    let r = Response {
        authoritative: true,
        answers: vec![a("ab.c", [10, 0, 0, 1])],
        ..Response::default()
    };
    // RFC 1035 4.1: header, question, answer; 4.1.4: a pointer is 11 then a 14-bit offset.
    let expected: &[u8] = &[
        0x12, 0x34, // ID, the query's
        0x85, 0x00, // QR=1 OPCODE=0 AA=1 TC=0 RD=1 | RA=0 Z=0 RCODE=0
        0, 1, // QDCOUNT
        0, 1, // ANCOUNT
        0, 0, // NSCOUNT
        0, 0, // ARCOUNT
        2, b'a', b'b', 1, b'c', 0, // QNAME at offset 12
        0, 1, // QTYPE A
        0, 1, // QCLASS IN
        0xC0, 12, // NAME: a pointer to offset 12
        0, 1, // TYPE A
        0, 1, // CLASS IN
        0, 0, 0, 5, // TTL
        0, 4, // RDLENGTH
        10, 0, 0, 1, // RDATA
    ];
    assert_eq!(encode_response(&q, &r, 512), expected);
}

#[test]
fn answers_round_trip_through_the_decoder() {
    let q = query("_80._tcp.web.prod.flotilla", TYPE_SRV, Some(1232));
    let target = "web-1-3.tasks.web.prod.flotilla";
    let r = Response {
        rcode: Rcode::NoError,
        authoritative: true,
        answers: vec![srv("_80._tcp.web.prod.flotilla", 80, target)],
        authority: vec![],
        additional: vec![
            a(target, [172, 17, 0, 5]),
            Record {
                name: target.into(),
                ttl: 5,
                data: RData::Aaaa(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 5)),
            },
        ],
    };
    let out = encode_response(&q, &r, udp_limit(&q));
    let parsed = parse_response(&out).expect("an answer");
    assert_eq!(parsed.id, 0x1234);
    assert_eq!((parsed.rcode, parsed.truncated, parsed.authoritative), (0, false, true));
    assert_eq!(parsed.answers, r.answers);
    assert_eq!(parsed.additional, r.additional, "the OPT record is not returned");

    let nx = Response {
        rcode: Rcode::NxDomain,
        authoritative: true,
        authority: vec![soa("prod.flotilla")],
        ..Response::default()
    };
    let parsed = parse_response(&encode_response(&q, &nx, 512)).expect("an answer");
    assert_eq!((parsed.rcode, parsed.authoritative), (3, true));
    assert!(parsed.answers.is_empty());
    assert_eq!(parsed.authority, nx.authority);
}

#[test]
fn the_srv_target_is_not_compressed_but_later_names_point_into_it() {
    let q = query("_80._tcp.web.prod.flotilla", TYPE_SRV, None);
    let target = "t1.tasks.web.prod.flotilla";
    let r = Response {
        answers: vec![srv("_80._tcp.web.prod.flotilla", 80, target)],
        additional: vec![a(target, [10, 0, 0, 1])],
        ..Response::default()
    };
    let out = encode_response(&q, &r, 512);
    let full = wire_name(&[b"t1", b"tasks", b"web", b"prod", b"flotilla"]);
    let at = out
        .windows(full.len())
        .position(|w| w == full)
        .expect("the target in full");
    // The A record's name is a pointer to the target: its last 16 bytes are the pointer,
    // type, class, TTL, RDLENGTH and address.
    let n = out.len();
    assert_eq!(out[n - 16..n - 14], [0xC0, at as u8]);
    assert_eq!(parse_response(&out).expect("an answer").additional, r.additional);
}

#[test]
fn names_are_compressed() {
    let q = query("web.prod.flotilla", TYPE_A, None);
    let r = Response {
        answers: (0..10).map(|i| a("web.prod.flotilla", [10, 0, 0, i])).collect(),
        ..Response::default()
    };
    let out = encode_response(&q, &r, 512);
    // Header 12, question 19 + 4, then 10 answers of a 2-byte pointer + 10 + 4 bytes
    // (uncompressed they would be 19 + 10 + 4 each: 365 bytes in all).
    assert_eq!(out.len(), 12 + 23 + 10 * 16);
    assert_eq!(parse_response(&out).expect("an answer").answers, r.answers);

    // Suffixes too: the SOA's names end with pointers to "prod.flotilla".
    let nx = Response {
        authority: vec![soa("prod.flotilla")],
        ..Response::default()
    };
    let out = encode_response(&q, &nx, 512);
    // SOA: owner a pointer (2), 10 fixed, mname "ns"+pointer (5), rname
    // "hostmaster"+pointer (13), 20 bytes of numbers.
    assert_eq!(out.len(), 12 + 23 + 2 + 10 + 5 + 13 + 20);
    assert_eq!(parse_response(&out).expect("an answer").authority, nx.authority);
}

#[test]
fn an_answer_too_big_drops_records_and_says_truncated() {
    let q = query("tasks.web.prod.flotilla", TYPE_A, None);
    let many = Response {
        answers: (0..60)
            .map(|i| a(&format!("t{i}.tasks.web.prod.flotilla"), [10, 0, 0, i as u8]))
            .collect(),
        authority: vec![soa("prod.flotilla")],
        ..Response::default()
    };
    let out = encode_response(&q, &many, 512);
    assert!(out.len() <= 512, "{}", out.len());
    let parsed = parse_response(&out).expect("an answer");
    assert!(parsed.truncated);
    assert!(!parsed.answers.is_empty() && parsed.answers.len() < 60);
    assert_eq!(parsed.answers[..], many.answers[..parsed.answers.len()]);
    assert!(parsed.authority.is_empty());
    // The most that fit: one more would not have.
    let one_more = Response {
        answers: many.answers[..parsed.answers.len() + 1].to_vec(),
        ..Response::default()
    };
    assert!(encode_response(&q, &one_more, usize::MAX).len() > 512);

    // Over TCP it fits; under 512 is 512; with EDNS the OPT record always stays.
    let parsed = parse_response(&encode_response(&q, &many, 65535)).expect("an answer");
    assert_eq!(
        (parsed.truncated, parsed.answers.len(), parsed.authority.len()),
        (false, 60, 1)
    );
    assert_eq!(encode_response(&q, &many, 0), out);
    let eq = query("tasks.web.prod.flotilla", TYPE_A, Some(1232));
    let out = encode_response(&eq, &many, 512);
    assert!(out.len() <= 512 && out[out.len() - 11..out.len() - 8] == [0, 0, 41]);
    assert!(parse_response(&out).expect("an answer").truncated);

    // Only the authority record does not fit: truncated.
    let fit = encode_response(&q, &Response::default(), 512).len();
    let soa_only = Response {
        answers: (0..((512 - fit - 60) / 16) as u8)
            .map(|i| a("tasks.web.prod.flotilla", [10, 0, 0, i]))
            .collect(),
        authority: vec![soa("a-much-longer-zone-name-than-the-question-has.example")],
        ..Response::default()
    };
    let parsed = parse_response(&encode_response(&q, &soa_only, 512)).expect("an answer");
    assert!(parsed.truncated && parsed.authority.is_empty());
    assert_eq!(parsed.answers, soa_only.answers);

    // Only additional records dropped: not truncated.
    let glue = Response {
        answers: vec![a("x", [1, 1, 1, 1])],
        additional: many.answers.clone(),
        ..Response::default()
    };
    let out = encode_response(&q, &glue, 512);
    let parsed = parse_response(&out).expect("an answer");
    assert!(!parsed.truncated && out.len() <= 512);
    assert_eq!(parsed.answers.len(), 1);
    assert!(!parsed.additional.is_empty() && parsed.additional.len() < 60);
}

#[test]
fn truncating_many_records_is_one_pass() {
    let q = query("tasks.web.prod.flotilla", TYPE_A, None);
    let r = Response {
        answers: (0..50_000u32)
            .map(|i| Record {
                name: format!("t{i}.tasks.web.prod.flotilla"),
                ttl: 5,
                data: RData::A(Ipv4Addr::from(i)),
            })
            .collect(),
        ..Response::default()
    };
    let started = std::time::Instant::now();
    for limit in [512, 65535] {
        let out = encode_response(&q, &r, limit);
        assert!(out.len() <= limit);
        assert!(parse_response(&out).expect("an answer").truncated);
    }
    assert!(started.elapsed().as_secs() < 2, "{:?}", started.elapsed());
}

#[test]
fn edns_is_read_and_answered_with_an_opt_record() {
    let q = query("web.prod.flotilla", TYPE_A, Some(4096));
    assert_eq!(q.edns_udp_size, Some(4096));
    let r = Response {
        answers: vec![a("web.prod.flotilla", [10, 0, 0, 1])],
        ..Response::default()
    };
    let out = encode_response(&q, &r, udp_limit(&q));
    assert_eq!(out[10..12], [0, 1], "ARCOUNT: the OPT record");
    // RFC 6891 6.1.2: root name, TYPE OPT, CLASS the UDP size (1232), TTL the extended
    // RCODE (0), version (0) and flags (0), RDLENGTH 0.
    assert_eq!(out[out.len() - 11..], [0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0]);
    let parsed = parse_response(&out).expect("an answer");
    assert_eq!(parsed.answers, r.answers);
    assert!(parsed.additional.is_empty());
    // Without EDNS, no OPT record.
    let plain = encode_response(&query("web.prod.flotilla", TYPE_A, None), &r, 512);
    assert_eq!((plain.len() + 11, plain[10..12] == [0, 0]), (out.len(), true));

    for (edns, limit) in [
        (None, 512),
        (Some(0), 512),
        (Some(800), 800),
        (Some(1232), 1232),
        (Some(65535), 1232),
    ] {
        assert_eq!(udp_limit(&query("x", TYPE_A, edns)), limit, "{edns:?}");
    }
}

#[test]
fn other_records_of_a_query_are_skipped_and_may_be_compressed() {
    // A query whose additional section has an A record named by a pointer to the
    // question, then the OPT record; its authority section an NS record.
    let mut m = header(0x0100, [1, 0, 1, 2]);
    m.extend(wire_name(&[b"Web", b"prod", b"flotilla"]));
    m.extend([0, 1, 0, 1]);
    m.extend([0xC0, 16]); // "prod.flotilla", a suffix of the question
    m.extend([0, 2, 0, 1, 0, 0, 0, 9, 0, 5, 2, b'n', b's', 0xC0, 12]); // NS ns.web.prod.flotilla
    m.extend([0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 9, 0, 4, 10, 0, 0, 1]);
    m.extend([0, 0, 41, 0x05, 0xDC, 0, 0, 0, 0, 0, 0]);
    let q = parse_query(&m).expect("a query");
    assert_eq!((q.name.as_str(), q.edns_udp_size), ("web.prod.flotilla", Some(1500)));
    // An OPT record in the authority section is not EDNS.
    let mut m = header(0x0100, [1, 0, 1, 0]);
    m.extend(wire_name(&[b"x"]));
    m.extend([0, 1, 0, 1, 0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(parse_query(&m).expect("a query").edns_udp_size, None);

    // A record that runs past the end is a truncated query.
    let mut short = build_query(1, "x", TYPE_A, Some(1232));
    short.truncate(short.len() - 1);
    assert_eq!(parse_query(&short), Err(ParseError::Truncated));
}

#[test]
fn a_response_with_compressed_and_unknown_records_decodes() {
    // As another server might write it: a pointer to a pointer, a CNAME and an OPT
    // record skipped, names in upper case.
    let mut m = header(0x8580, [1, 3, 0, 1]);
    m.extend(wire_name(&[b"WEB", b"prod", b"flotilla"]));
    m.extend([0, 1, 0, 1]);
    m.extend([0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 9, 0, 5, 2, b'c', b'n', 0xC0, 16]); // CNAME
    let alias = m.len() - 5; // "cn.prod.flotilla"
    m.extend([0xC0, alias as u8, 0, 1, 0, 1, 0, 0, 0, 9, 0, 4, 10, 0, 0, 7]);
    let pointer = m.len();
    m.extend([0xC0, (pointer - 16) as u8]); // SRV owner: a pointer to the A's owner pointer
    m.extend([0, 33, 0, 1, 0, 0, 0, 9, 0, 8, 0, 1, 0, 2, 0, 3, 0xC0, 12]);
    m.extend([0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0]);
    let parsed = parse_response(&m).expect("an answer");
    assert_eq!(
        (parsed.id, parsed.rcode, parsed.authoritative, parsed.truncated),
        (1, 0, true, false)
    );
    assert_eq!(
        parsed.answers,
        [
            a("cn.prod.flotilla", [10, 0, 0, 7]),
            Record {
                name: "cn.prod.flotilla".into(),
                ttl: 9,
                data: RData::Srv {
                    priority: 1,
                    weight: 2,
                    port: 3,
                    target: "web.prod.flotilla".into()
                }
            }
        ]
        .map(|r| Record { ttl: 9, ..r })
    );
    assert!(parsed.additional.is_empty());

    // RDATA must be its RDLENGTH: an A record of 5 bytes, or 3, is malformed.
    let mut m = header(0x8400, [0, 1, 0, 0]);
    m.extend([0, 0, 1, 0, 1, 0, 0, 0, 9, 0, 5, 1, 2, 3, 4, 5]);
    assert_eq!(parse_response(&m), Err(ParseError::Truncated));
    m[22] = 3; // RDLENGTH's low byte
    assert_eq!(parse_response(&m), Err(ParseError::Truncated));
    // Counts beyond the records.
    let mut m = encode_response(&query("x", TYPE_A, None), &Response::default(), 512);
    m[7] = 1;
    assert_eq!(parse_response(&m), Err(ParseError::Truncated));
}

#[test]
fn bad_names_are_refused() {
    let question = |name: &[u8]| {
        let mut m = header(0x0100, [1, 0, 0, 0]);
        m.extend_from_slice(name);
        m.extend_from_slice(&[0, 1, 0, 1]);
        m
    };
    let bad = |m: &[u8]| matches!(parse_query(m), Err(ParseError::BadName(_)));
    // A pointer to itself, a forward pointer, one past the end, one of two bytes cut.
    assert!(bad(&question(&[0xC0, 12])));
    assert!(bad(&question(&[1, b'a', 0xC0, 16, 0])));
    assert!(bad(&question(&[0xC0, 200])));
    assert_eq!(parse_query(&question(&[0xC0])[..13]), Err(ParseError::Truncated));
    // A pointer into the header is followed (QDCOUNT's high byte reads as the root).
    assert_eq!(parse_query(&question(&[0xC0, 4])).expect("the root").name, "");

    // A record whose data is `n` pointers, each to the one before (the first to the
    // question, the root), then a record named by the last: `n + 1` jumps.
    let chain = |n: u16| {
        let mut m = header(0x0100, [1, 0, 0, 2]);
        m.extend([0, 0, 1, 0, 1]);
        m.extend([0, 0, 99, 0, 1, 0, 0, 0, 0]);
        m.extend((2 * n).to_be_bytes());
        let start = m.len() as u16;
        m.extend([0xC0, 12]);
        for i in 1..n {
            m.extend((0xC000 | (start + 2 * (i - 1))).to_be_bytes());
        }
        m.extend((0xC000 | (start + 2 * (n - 1))).to_be_bytes());
        m.extend([0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4]);
        m
    };
    assert!(parse_query(&chain(100)).is_ok());
    assert!(bad(&chain(200)), "past the bound on jumps");

    // A 64-byte label; 255 bytes on the wire, then 256.
    assert!(bad(&question(&wire_name(&[&[b'a'; 64]]))));
    let label = [b'a'; 63];
    let max = wire_name(&[&label, &label, &label, &[b'b'; 61]]);
    assert_eq!(max.len(), 255);
    assert_eq!(parse_query(&question(&max)).expect("255 bytes").name.len(), 253);
    let over = wire_name(&[&label, &label, &label, &[b'b'; 62]]);
    assert_eq!(
        parse_query(&question(&over)),
        Err(ParseError::BadName("longer than 255 bytes"))
    );
    // The same through a pointer: 127 bytes before a pointer to a 128-byte name, then 128.
    let through_pointer = |first: usize| {
        let mut m = question(&wire_name(&[&label, &label[..62]]));
        m[11] = 1;
        m.extend(wire_name(&[&label, &label[..first]]).split_last().expect("a name").1);
        m.extend([0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4]);
        m
    };
    assert!(parse_query(&through_pointer(62)).is_ok());
    assert_eq!(
        parse_query(&through_pointer(63)),
        Err(ParseError::BadName("longer than 255 bytes"))
    );
    // A label holding a dot, or a byte that is not ASCII.
    assert!(bad(&question(&wire_name(&[b"a.", b"b"]))));
    assert!(bad(&question(&wire_name(&[b"caf\xC3\xA9"]))));

    assert_eq!(parse_query(&[0; 11]), Err(ParseError::TooShort));
    assert_eq!(parse_response(&[0; 11]), Err(ParseError::TooShort));
    let mut answer = build_query(1, "x", TYPE_A, None);
    answer[2] |= 0x80;
    assert_eq!(parse_query(&answer), Err(ParseError::NotAQuery));
    assert_eq!(parse_query(&header(0, [2, 0, 0, 0])), Err(ParseError::QuestionCount(2)));
    assert_eq!(parse_query(&header(0, [0, 0, 0, 0])), Err(ParseError::QuestionCount(0)));
    assert_eq!(message_id(&[0xAB, 0xCD]), Some(0xABCD));
    assert_eq!(message_id(&[1]), None);
    assert!(ParseError::BadName("why").to_string().contains("why"));
}

#[test]
fn records_whose_names_cannot_be_written_are_left_out() {
    let q = query("web.prod.flotilla", TYPE_A, None);
    let long = ["a".repeat(63), "a".repeat(63), "a".repeat(63), "a".repeat(62)].join(".");
    let r = Response {
        answers: vec![
            a("a..b", [1, 1, 1, 1]),
            a(&"a".repeat(64), [1, 1, 1, 2]),
            a(&long, [1, 1, 1, 3]),
            srv("web.prod.flotilla", 1, "bad..target"),
            a("ok.web.prod.flotilla.", [1, 1, 1, 4]),
            a(&long[1..], [1, 1, 1, 5]),
        ],
        ..Response::default()
    };
    let parsed = parse_response(&encode_response(&q, &r, 65535)).expect("an answer");
    assert_eq!(
        parsed.answers,
        [a("ok.web.prod.flotilla", [1, 1, 1, 4]), a(&long[1..], [1, 1, 1, 5])]
    );
    assert!(!parsed.truncated);
}

#[test]
fn error_answers_echo_the_question() {
    let mut msg = build_query(0x1234, "x.y", TYPE_A, Some(1232));
    msg[2] = 0x28; // opcode 5, RD 0
    let q = parse_query(&msg).expect("a query");
    assert_eq!((q.opcode, q.recursion_desired), (5, false));
    let out = encode_error(q.id, Some(&q), Rcode::NotImp);
    let expected: &[u8] = &[
        0x12, 0x34, // ID
        0xA8, 0x04, // QR=1 OPCODE=5 AA=0 TC=0 RD=0 | RA=0 RCODE=4
        0, 1, 0, 0, 0, 0, 0, 0, // the question only
        1, b'x', 1, b'y', 0, 0, 1, 0, 1,
    ];
    assert_eq!(out, expected);
    let out = encode_error(q.id, Some(&q), Rcode::Refused);
    let parsed = parse_response(&out).expect("an answer");
    assert_eq!((parsed.id, parsed.rcode, parsed.authoritative), (0x1234, 5, false));
    assert_eq!(
        encode_error(9, None, Rcode::FormErr),
        [0, 9, 0x80, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]
    );
}

#[test]
fn no_input_panics() {
    // xorshift64: deterministic, no dependency.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let q = query("_8080._tcp.web.prod.flotilla", TYPE_SRV, Some(1232));
    let target = "web-1-3.tasks.web.prod.flotilla";
    let valid = [
        build_query(7, "tasks.web.prod.flotilla", TYPE_A, Some(1232)),
        build_query(8, "WEB.prod.flotilla", TYPE_AAAA, None),
        encode_response(
            &q,
            &Response {
                authoritative: true,
                answers: vec![srv(&q.name, 8080, target)],
                additional: vec![
                    a(target, [1, 2, 3, 4]),
                    Record {
                        name: target.into(),
                        ttl: 5,
                        data: RData::Aaaa(Ipv6Addr::LOCALHOST),
                    },
                ],
                ..Response::default()
            },
            512,
        ),
        encode_response(
            &q,
            &Response {
                rcode: Rcode::NxDomain,
                authority: vec![soa("prod.flotilla")],
                ..Response::default()
            },
            512,
        ),
    ];
    let (mut queries, mut answers) = (0, 0);
    for i in 0..20_000 {
        let msg: Vec<u8> = if i % 4 == 0 {
            let len = (next() % 100) as usize;
            (0..len).map(|_| next() as u8).collect()
        } else {
            let mut m = valid[(next() % 4) as usize].clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % m.len();
                match next() % 3 {
                    0 => m[at] = next() as u8,
                    1 => m[at] ^= 1 << (next() % 8),
                    _ => m[at] = [0, 0xC0, 12, 63, 64][(next() % 5) as usize],
                }
            }
            if next() % 4 == 0 {
                m.truncate((next() as usize) % m.len());
            }
            m
        };
        if let Ok(q) = parse_query(&msg) {
            queries += 1;
            // Whatever parses is answered with a message that decodes, echoing the question.
            let r = Response {
                answers: vec![a(&q.name, [10, 0, 0, 1]), srv(&q.name, 80, &format!("t.{}", q.name))],
                ..Response::default()
            };
            let out = encode_response(&q, &r, udp_limit(&q));
            assert!(out.len() <= udp_limit(&q));
            assert_eq!(parse_response(&out).expect("our answer").id, q.id);
            let mut echo = encode_error(q.id, Some(&q), Rcode::Refused);
            echo[2] &= 0x7F;
            let back = parse_query(&echo).expect("the question echoed");
            assert_eq!((back.name, back.qtype, back.qclass), (q.name, q.qtype, q.qclass));
        }
        answers += usize::from(parse_response(&msg).is_ok());
    }
    // The mutations reach past the first checks.
    assert!(queries > 1000 && answers > 1000, "{queries} {answers}");
}
