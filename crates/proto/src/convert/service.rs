use flotilla_types::Service;

use crate::v1::ServiceInfo;

impl From<&Service> for ServiceInfo {
    fn from(s: &Service) -> Self {
        ServiceInfo {
            name: s.spec.name.clone(),
            version: s.version,
            spec_document: super::spec_document(&s.spec),
            created_at_ms: s.created_at,
            updated_at_ms: s.updated_at,
            image: s.spec.image.clone(),
            replicas: s.spec.replicas,
            template_version: s.template_version,
            ..Default::default()
        }
    }
}

impl ServiceInfo {
    /// The full spec, decoded from its document.
    pub fn spec(&self) -> Result<flotilla_types::ServiceSpec, flotilla_types::SpecError> {
        super::parse_spec_document(&self.spec_document)
    }
}
