//! The invariants every decoded value must keep, shared by the targets.

use std::fmt::Debug;

use flotilla_raft_types::wire;
use flotilla_types::ServiceSpec;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A protobuf message as tonic decodes it; when it decodes, it re-encodes to
/// `encoded_len` bytes that decode to the same value.
pub fn proto<M: prost::Message + Default + PartialEq + Debug>(data: &[u8]) -> Option<M> {
    let m = M::decode(data).ok()?;
    let bytes = m.encode_to_vec();
    assert_eq!(bytes.len(), m.encoded_len(), "encoded_len is the encoding's length");
    let back = M::decode(bytes.as_slice()).expect("a re-encoded message decodes");
    assert!(back == m, "a message survives re-encoding: {m:?} became {back:?}");
    Some(m)
}

/// A JSON value as `flotilla_raft_types::wire` decodes it (the codec of `RaftMessage.data`
/// and of snapshot headers); when it decodes, it encodes (`wire::encode` panics when it
/// cannot: a node answering with it would) and its encoding is a fixed point.
pub fn json<T: Serialize + DeserializeOwned>(data: &[u8]) -> Option<T> {
    let value: T = wire::decode(data).ok()?;
    let bytes = wire::encode(&value);
    let back: T = wire::decode(&bytes).unwrap_or_else(|e| {
        panic!(
            "a re-encoded value does not decode ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    let again = wire::encode(&back);
    assert!(
        again == bytes,
        "a value changes when encoded again:\n{}\n{}",
        String::from_utf8_lossy(&bytes),
        String::from_utf8_lossy(&again)
    );
    Some(value)
}

/// A value compared by `PartialEq` after a JSON round trip (for types that have it).
pub fn json_eq<T: Serialize + DeserializeOwned + PartialEq + Debug>(data: &[u8]) -> Option<T> {
    let value: T = json(data)?;
    let back: T = wire::decode(&wire::encode(&value)).expect("checked by json()");
    assert_eq!(back, value, "a value survives a JSON round trip");
    Some(value)
}

/// A parsed spec is valid and survives both forms it is written back in: the JSON of a
/// spec document (`get -o json`, `ApplyRequest.spec_document`) and YAML (`get -o yaml`).
pub fn spec(spec: &ServiceSpec) {
    if let Err(e) = spec.validate() {
        panic!("a parsed spec is invalid ({e}): {spec:?}");
    }
    let doc = flotilla_proto::convert::spec_document(spec);
    match flotilla_proto::convert::parse_spec_document(&doc) {
        Ok(back) => assert_eq!(
            &back,
            spec,
            "a spec survives its JSON: {}",
            String::from_utf8_lossy(&doc)
        ),
        Err(e) => panic!(
            "the JSON of a parsed spec does not parse ({e}): {}",
            String::from_utf8_lossy(&doc)
        ),
    }
    let yaml = serde_norway::to_string(spec).expect("a spec serializes to YAML");
    match ServiceSpec::parse(&yaml) {
        Ok(back) => assert_eq!(&back, spec, "a spec survives its YAML:\n{yaml}"),
        Err(e) => panic!("the YAML of a parsed spec does not parse ({e}):\n{yaml}"),
    }
    for c in &spec.placement.constraints {
        assert!(
            flotilla_types::Constraint::parse(c).is_ok(),
            "a valid spec's constraint {c:?} parses"
        );
    }
}

/// Bytes as text: valid UTF-8 as it is, anything else with replacement characters (so a
/// flipped high bit still reaches the parser behind).
pub fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// `data` cut in two at its first NUL byte (or in the middle when it has none).
pub fn halves(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => data.split_at(data.len() / 2),
    }
}
