//! A `ContainerSpec` as the engine's create request.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, PortBinding};
use flotilla_executor::{ContainerSpec, LogRotation};

/// Where a driver publishes ports unless told otherwise (`DockerDriver::with_publish_addr`;
/// the agent's `--publish-addr` defaults to 0.0.0.0): loopback, so that a workload is never
/// exposed on the machine's interfaces by a library user's accident.
pub(crate) const DEFAULT_PUBLISH_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The containers' resolver: the agent's DNS server, and the cluster's search domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dns {
    pub server: IpAddr,
    pub search: String,
}

/// The create request of `spec`, its ports published on `publish`.
pub(crate) fn create_body(
    spec: &ContainerSpec,
    logs: &LogRotation,
    publish: IpAddr,
    dns: Option<&Dns>,
) -> ContainerCreateBody {
    let non_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for port in &spec.ports {
        let key = format!("{}/{}", port.container, port.protocol.as_str());
        let binding = PortBinding {
            host_ip: Some(publish.to_string()),
            // Empty lets the engine choose a free port.
            host_port: Some(port.host.map(|p| p.to_string()).unwrap_or_default()),
        };
        bindings
            .entry(key)
            .or_default()
            .get_or_insert_with(Vec::new)
            .push(binding);
    }
    let exposed: Vec<String> = bindings.keys().cloned().collect();
    let host_config = HostConfig {
        nano_cpus: (spec.cpu_millis > 0).then(|| i64::from(spec.cpu_millis) * 1_000_000),
        memory: (spec.memory_mb > 0).then(|| i64::from(spec.memory_mb) * 1024 * 1024),
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        dns: dns.map(|d| vec![d.server.to_string()]),
        dns_search: dns.map(|d| vec![d.search.clone()]),
        // Rotated, whatever the engine's default driver is: `json-file` is the one the
        // logs API reads back on every engine.
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(HashMap::from([
                ("max-size".to_string(), logs.max_size.to_string()),
                ("max-file".to_string(), logs.max_files.to_string()),
            ])),
        }),
        ..HostConfig::default()
    };
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        // Docker drops the image's Cmd when the entrypoint is overridden, as `docker run
        // --entrypoint` does, so command without args runs the command alone.
        entrypoint: non_empty(&spec.command),
        cmd: non_empty(&spec.args),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(spec.labels.clone().into_iter().collect()),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        host_config: Some(host_config),
        ..ContainerCreateBody::default()
    }
}

#[cfg(test)]
mod tests {
    use flotilla_executor::{PortMapping, Protocol};

    use super::*;

    #[test]
    fn limits_ports_and_command_are_translated() {
        let spec = ContainerSpec {
            name: "web".into(),
            image: "flotilla/busybox:latest".into(),
            command: vec!["httpd".into()],
            args: vec!["-f".into()],
            env: [("A".to_string(), "1".to_string())].into(),
            labels: [("flotilla.task".to_string(), "t1".to_string())].into(),
            cpu_millis: 250,
            memory_mb: 64,
            ports: vec![
                PortMapping {
                    container: 80,
                    host: Some(8080),
                    protocol: Protocol::Tcp,
                },
                PortMapping {
                    container: 53,
                    host: None,
                    protocol: Protocol::Udp,
                },
            ],
        };
        let body = create_body(&spec, &LogRotation::default(), DEFAULT_PUBLISH_ADDRESS, None);
        assert_eq!(body.entrypoint, Some(vec!["httpd".to_string()]));
        assert_eq!(body.cmd, Some(vec!["-f".to_string()]));
        assert_eq!(body.env, Some(vec!["A=1".to_string()]));
        let host = body.host_config.unwrap();
        assert_eq!(host.nano_cpus, Some(250_000_000));
        assert_eq!(host.memory, Some(64 * 1024 * 1024));
        let bindings = host.port_bindings.unwrap();
        let web = bindings["80/tcp"].as_ref().unwrap();
        assert_eq!(web[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(web[0].host_port.as_deref(), Some("8080"));
        let dns = bindings["53/udp"].as_ref().unwrap();
        assert_eq!(dns[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(dns[0].host_port.as_deref(), Some(""));
        let log = host.log_config.unwrap();
        assert_eq!(log.typ.as_deref(), Some("json-file"));
        let log = log.config.unwrap();
        assert_eq!((log["max-size"].as_str(), log["max-file"].as_str()), ("10485760", "3"));

        // `--publish-addr`: every published port binds there.
        let body = create_body(&spec, &LogRotation::default(), "0.0.0.0".parse().unwrap(), None);
        let host = body.host_config.unwrap();
        let bindings = host.port_bindings.unwrap();
        for key in ["80/tcp", "53/udp"] {
            assert_eq!(bindings[key].as_ref().unwrap()[0].host_ip.as_deref(), Some("0.0.0.0"));
        }
        assert_eq!(
            (host.dns, host.dns_search),
            (None, None),
            "the engine's resolver by default"
        );

        // The agent's DNS server: the containers resolve names there, in the cluster's domain.
        let dns = Dns {
            server: "172.17.0.1".parse().unwrap(),
            search: "prod.flotilla".into(),
        };
        let host = create_body(&spec, &LogRotation::default(), DEFAULT_PUBLISH_ADDRESS, Some(&dns))
            .host_config
            .unwrap();
        assert_eq!(host.dns, Some(vec!["172.17.0.1".to_string()]));
        assert_eq!(host.dns_search, Some(vec!["prod.flotilla".to_string()]));
    }

    #[test]
    fn empty_command_and_limits_keep_the_image_defaults() {
        let body = create_body(
            &ContainerSpec {
                image: "img".into(),
                ..ContainerSpec::default()
            },
            &LogRotation::default(),
            DEFAULT_PUBLISH_ADDRESS,
            None,
        );
        assert_eq!((body.entrypoint, body.cmd), (None, None));
        let host = body.host_config.unwrap();
        assert_eq!((host.nano_cpus, host.memory), (None, None));
        assert_eq!(host.port_bindings, None);
        assert_eq!(body.exposed_ports, None);
    }
}
