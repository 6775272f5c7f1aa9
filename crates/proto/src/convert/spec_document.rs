//! A service spec on the wire stays a document (`bytes spec_document`): UTF-8 JSON of the
//! spec, as flotilla-types serialises it, so a new spec field needs no proto change.

use flotilla_types::{ServiceSpec, SpecError};

/// The document of `spec`.
pub fn spec_document(spec: &ServiceSpec) -> Vec<u8> {
    spec.to_json().into_bytes()
}

/// One validated spec from a document (JSON; YAML is accepted too).
pub fn parse_spec_document(doc: &[u8]) -> Result<ServiceSpec, SpecError> {
    let text = std::str::from_utf8(doc).map_err(|e| SpecError::Parse(format!("the spec is not UTF-8: {e}")))?;
    ServiceSpec::parse(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let spec = ServiceSpec::parse("name: web\nimage: nginx\nreplicas: 2\n").unwrap();
        let doc = spec_document(&spec);
        assert!(doc.starts_with(b"{"), "a document is JSON");
        assert_eq!(parse_spec_document(&doc), Ok(spec));
        assert!(matches!(parse_spec_document(&[0xff, 0xfe]), Err(SpecError::Parse(_))));
    }
}
