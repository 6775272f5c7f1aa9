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

#[test]
fn a_query_round_trips_lowercased() {
    let q = query("WeB.Prod.Flotilla", TYPE_A, None);
    assert_eq!(
        q,
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
    assert_eq!(query("x", TYPE_A, Some(4096)).edns_udp_size, Some(4096));
}

#[test]
fn an_a_answer_is_the_rfcs_bytes() {
    let q = query("ab.c", TYPE_A, None);
    let r = Response {
        authoritative: true,
        answers: vec![a("ab.c", [10, 0, 0, 1])],
        ..Response::default()
    };
    let expected: &[u8] = &[
        0x12, 0x34, // id
        0x85, 0x00, // QR, opcode 0, AA, RD; RA 0, rcode 0
        0, 1, 0, 1, 0, 0, 0, 0, // one question, one answer
        2, b'a', b'b', 1, b'c', 0, // the question's name
        0, 1, 0, 1, // A, IN
        0xC0, 12, // the answer's name: a pointer to the question's
        0, 1, 0, 1, // A, IN
        0, 0, 0, 5, // TTL
        0, 4, 10, 0, 0, 1, // RDLENGTH, the address
    ];
    assert_eq!(encode_response(&q, &r, 512), expected);
}

#[test]
fn answers_round_trip_through_the_decoder() {
    let q = query("_80._tcp.web.prod.flotilla", TYPE_SRV, Some(1232));
    let r = Response {
        rcode: Rcode::NoError,
        authoritative: true,
        answers: vec![Record {
            name: "_80._tcp.web.prod.flotilla".into(),
            ttl: 5,
            data: RData::Srv {
                priority: 0,
                weight: 1,
                port: 80,
                target: "web-1-3.tasks.web.prod.flotilla".into(),
            },
        }],
        authority: vec![],
        additional: vec![
            a("web-1-3.tasks.web.prod.flotilla", [172, 17, 0, 5]),
            Record {
                name: "web-1-3.tasks.web.prod.flotilla".into(),
                ttl: 5,
                data: RData::Aaaa(Ipv6Addr::LOCALHOST),
            },
        ],
    };
    let out = encode_response(&q, &r, udp_limit(&q));
    let parsed = parse_response(&out).expect("an answer");
    assert_eq!(parsed.id, 0x1234);
    assert_eq!((parsed.rcode, parsed.truncated, parsed.authoritative), (0, false, true));
    assert_eq!(parsed.answers, r.answers);
    assert_eq!(
        parsed.additional, r.additional,
        "the OPT record is not a record of the answer"
    );
    // The OPT record is there: the answer parses as a query would (11 bytes at the end).
    assert_eq!(&out[out.len() - 11..out.len() - 8], &[0, 0, 41]);

    let nx = Response {
        rcode: Rcode::NxDomain,
        authoritative: true,
        authority: vec![soa("prod.flotilla")],
        ..Response::default()
    };
    let parsed = parse_response(&encode_response(&q, &nx, 512)).expect("an answer");
    assert_eq!(parsed.rcode, 3);
    assert_eq!(parsed.authority, nx.authority);
}

#[test]
fn names_are_compressed() {
    let q = query("web.prod.flotilla", TYPE_A, None);
    let r = Response {
        answers: (0..10).map(|i| a("web.prod.flotilla", [10, 0, 0, i])).collect(),
        ..Response::default()
    };
    let out = encode_response(&q, &r, 512);
    // Header 12, question 19 + 4, then 10 answers of 2 (pointer) + 10 + 4 bytes.
    assert_eq!(out.len(), 12 + 23 + 10 * 16);
    assert_eq!(parse_response(&out).expect("an answer").answers, r.answers);
}

#[test]
fn an_answer_too_big_drops_records_and_says_truncated() {
    let q = query("tasks.web.prod.flotilla", TYPE_A, None);
    let many = Response {
        answers: (0..60)
            .map(|i| a(&format!("t{i}.tasks.web.prod.flotilla"), [10, 0, 0, i as u8]))
            .collect(),
        ..Response::default()
    };
    let out = encode_response(&q, &many, 512);
    assert!(out.len() <= 512, "{}", out.len());
    let parsed = parse_response(&out).expect("an answer");
    assert!(parsed.truncated);
    assert!(!parsed.answers.is_empty() && parsed.answers.len() < 60);
    assert_eq!(parsed.answers[..], many.answers[..parsed.answers.len()]);
    // Over TCP it fits.
    let parsed = parse_response(&encode_response(&q, &many, 65535)).expect("an answer");
    assert_eq!((parsed.truncated, parsed.answers.len()), (false, 60));
    // Only additional records dropped: not truncated.
    let glue = Response {
        answers: vec![a("x", [1, 1, 1, 1])],
        additional: many.answers.clone(),
        ..Response::default()
    };
    let parsed = parse_response(&encode_response(&q, &glue, 512)).expect("an answer");
    assert!(!parsed.truncated);
    assert_eq!(parsed.answers.len(), 1);
}

#[test]
fn compressed_pointer_loops_and_oversized_names_are_refused() {
    let header = |qd: u16| {
        let mut m = vec![0, 1, 0, 0, 0, qd as u8, 0, 0, 0, 0, 0, 0];
        m[5] = qd as u8;
        m
    };
    // A question whose name points at a name earlier in the message is read through it.
    let mut m = build_query(1, "a.b", TYPE_A, None);
    m[5] = 2; // a second question: refused for its count, after the first parsed
    assert_eq!(parse_query(&m), Err(ParseError::QuestionCount(2)));

    let mut looped = header(1);
    looped.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]); // points at itself
    assert!(matches!(parse_query(&looped), Err(ParseError::BadName(_))));
    let mut forward = header(1);
    forward.extend_from_slice(&[0xC0, 200, 0, 1, 0, 1]);
    assert!(parse_query(&forward).is_err());

    let long_label = "a".repeat(64);
    let mut m = header(1);
    m.push(64);
    m.extend_from_slice(long_label.as_bytes());
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    assert!(
        parse_query(&m).is_err(),
        "a 64-byte label (its length byte is a reserved type)"
    );
    let long_name = vec!["a".repeat(63); 5].join(".");
    let mut m = header(1);
    for label in long_name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    assert_eq!(parse_query(&m), Err(ParseError::BadName("longer than 255 bytes")));

    assert_eq!(parse_query(&[0; 5]), Err(ParseError::TooShort));
    let mut answer = build_query(1, "x", TYPE_A, None);
    answer[2] |= 0x80;
    assert_eq!(parse_query(&answer), Err(ParseError::NotAQuery));
    assert_eq!(message_id(&[0xAB, 0xCD]), Some(0xABCD));
    assert_eq!(message_id(&[1]), None);
}

#[test]
fn error_answers_echo_the_question() {
    let q = query("x.y", TYPE_A, None);
    let out = encode_error(q.id, Some(&q), Rcode::Refused);
    let parsed = parse_response(&out).expect("an answer");
    assert_eq!((parsed.id, parsed.rcode), (0x1234, 5));
    let bare = parse_response(&encode_error(9, None, Rcode::FormErr)).expect("an answer");
    assert_eq!((bare.id, bare.rcode), (9, 1));
}

#[test]
fn no_input_panics() {
    // xorshift: deterministic, no dependency.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let q = query("web.prod.flotilla", TYPE_SRV, Some(1232));
    let valid = [
        build_query(7, "tasks.web.prod.flotilla", TYPE_A, Some(1232)),
        encode_response(
            &q,
            &Response {
                answers: vec![a("web.prod.flotilla", [1, 2, 3, 4])],
                authority: vec![soa("prod.flotilla")],
                ..Response::default()
            },
            512,
        ),
    ];
    for i in 0..20_000 {
        let msg: Vec<u8> = if i % 2 == 0 {
            let len = (next() % 80) as usize;
            (0..len).map(|_| next() as u8).collect()
        } else {
            let mut m = valid[i % 4 / 2].clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % m.len();
                m[at] = next() as u8;
            }
            if next() % 4 == 0 {
                m.truncate((next() as usize) % m.len());
            }
            m
        };
        let _ = parse_query(&msg);
        let _ = parse_response(&msg);
    }
}
