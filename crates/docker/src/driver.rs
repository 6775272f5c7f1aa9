use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use bollard::Docker;
use flotilla_executor::{
    Bridge, ContainerId, ContainerSpec, ContainerStatus, Driver, DriverError, ExecOutput, ExecRequest, ExecSession,
    LogOptions, LogRotation, Logs, TaskStats,
};
use futures::StreamExt;

use crate::error::{generic, on_container, status};

/// Where the engine listens when DOCKER_HOST is unset.
const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";
/// An engine that does not answer a ping within this is treated as absent.
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Room the HTTP request needs beyond the stop grace period: the engine answers a stop
/// only once the container is gone.
const STOP_SLACK: Duration = Duration::from_secs(60);

/// The Docker Engine driver. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct DockerDriver {
    docker: Docker,
    host: String,
    /// How long a pull of a missing image may run (see `crate::image`).
    pull_deadline: Duration,
    /// Rotation of each container's log (the engine's `json-file` driver, rotated by the
    /// engine).
    logs: LogRotation,
    /// Where published ports bind.
    publish: std::net::IpAddr,
    /// The containers' resolver and search domain (`with_dns`); the engine's default when
    /// unset.
    dns: Option<crate::config::Dns>,
}

impl DockerDriver {
    /// Connects to DOCKER_HOST, or the default unix socket, and checks the engine
    /// answers. Fails with `Unavailable` naming the address otherwise.
    pub async fn connect() -> Result<Self, DriverError> {
        let host = std::env::var("DOCKER_HOST").unwrap_or_else(|_| DEFAULT_HOST.to_string());
        Self::connect_to(&host).await
    }

    /// Like `connect`, to an explicit address (`unix://…`, `tcp://…`).
    pub async fn connect_to(host: &str) -> Result<Self, DriverError> {
        let unreachable =
            |reason: String| DriverError::Unavailable(format!("docker engine not reachable at {host}: {reason}"));
        let docker = Docker::connect_with_host(host).map_err(|e| unreachable(e.to_string()))?;
        match tokio::time::timeout(PING_TIMEOUT, docker.ping()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => return Err(unreachable(format!("no answer within {PING_TIMEOUT:?}"))),
        }
        // bollard speaks a newer API than many installed engines; settle on the
        // engine's version or every call would be refused.
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        tracing::debug!(host, api = %docker.client_version(), "connected to docker engine");
        Ok(DockerDriver {
            docker,
            host: host.to_string(),
            pull_deadline: crate::image::DEFAULT_PULL_DEADLINE,
            logs: LogRotation::default(),
            publish: crate::config::DEFAULT_PUBLISH_ADDRESS,
            dns: None,
        })
    }

    /// Pulls of missing images may run this long (default 10 minutes).
    pub fn with_pull_deadline(mut self, deadline: Duration) -> Self {
        self.pull_deadline = deadline;
        self
    }

    /// How the containers this driver creates keep their logs.
    pub fn with_log_rotation(mut self, logs: LogRotation) -> Self {
        self.logs = logs;
        self
    }

    /// Publish the containers' ports on `addr` (default 127.0.0.1).
    pub fn with_publish_addr(mut self, addr: std::net::IpAddr) -> Self {
        self.publish = addr;
        self
    }

    /// The containers this driver creates resolve names at `server` (port 53: the engine
    /// takes an address only), trying `search` for a bare name.
    pub fn with_dns(mut self, server: std::net::IpAddr, search: String) -> Self {
        self.dns = Some(crate::config::Dns { server, search });
        self
    }

    /// The engine's default bridge network: its gateway (an address of this machine the
    /// containers reach) and its subnet as (network, prefix length).
    pub async fn bridge(&self) -> Result<Bridge, DriverError> {
        let net = self.docker.inspect_network("bridge", None).await.map_err(generic)?;
        let config = net.ipam.and_then(|i| i.config).unwrap_or_default();
        config
            .iter()
            .find_map(|c| {
                let (network, prefix) = c.subnet.as_deref()?.split_once('/')?;
                let network: std::net::IpAddr = network.parse().ok()?;
                // Engines that chose the gateway themselves may not list it: it is then
                // the subnet's first address.
                let gateway = match c.gateway.as_deref().filter(|g| !g.is_empty()) {
                    Some(g) => g.parse().ok()?,
                    None => first_address(network)?,
                };
                Some(Bridge {
                    gateway,
                    network,
                    prefix: prefix.parse().ok()?,
                })
            })
            .ok_or_else(|| DriverError::Unavailable("the engine's bridge network has no gateway and subnet".into()))
    }

    /// The address this driver talks to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether the image is present locally (no pull attempted).
    pub async fn image_exists(&self, image: &str) -> Result<bool, DriverError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if status(&e) == Some(404) => Ok(false),
            Err(e) => Err(generic(e)),
        }
    }

    async fn create_once(&self, spec: &ContainerSpec) -> Result<ContainerId, bollard::errors::Error> {
        let options = (!spec.name.is_empty()).then(|| CreateContainerOptionsBuilder::new().name(&spec.name).build());
        let created = self
            .docker
            .create_container(
                options,
                crate::config::create_body(spec, &self.logs, self.publish, self.dns.as_ref()),
            )
            .await?;
        Ok(ContainerId(created.id))
    }
}

/// The first host address of a subnet (`172.17.0.0` → `172.17.0.1`).
fn first_address(network: std::net::IpAddr) -> Option<std::net::IpAddr> {
    match network {
        std::net::IpAddr::V4(n) => u32::from(n).checked_add(1).map(|a| std::net::Ipv4Addr::from(a).into()),
        std::net::IpAddr::V6(n) => u128::from(n).checked_add(1).map(|a| std::net::Ipv6Addr::from(a).into()),
    }
}

/// What a failed create means: the engine answers 404 only for a missing image here.
fn create_error(spec: &ContainerSpec, e: bollard::errors::Error) -> DriverError {
    match status(&e) {
        Some(404) => DriverError::ImageNotFound {
            image: spec.image.clone(),
            reason: String::new(),
        },
        Some(409) => DriverError::AlreadyExists {
            name: spec.name.clone(),
        },
        _ => generic(e),
    }
}

#[async_trait]
impl Driver for DockerDriver {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<ContainerId, DriverError> {
        match self.create_once(spec).await {
            Ok(id) => Ok(id),
            Err(e) if status(&e) == Some(404) => {
                crate::image::pull(&self.docker, &spec.image, self.pull_deadline).await?;
                self.create_once(spec).await.map_err(|e| create_error(spec, e))
            }
            Err(e) => Err(create_error(spec, e)),
        }
    }

    async fn start(&self, id: &ContainerId) -> Result<(), DriverError> {
        // The engine answers 304 for a running container, which bollard counts as Ok.
        self.docker
            .start_container(id.as_str(), None)
            .await
            .map_err(|e| on_container(id, e))
    }

    async fn stop(&self, id: &ContainerId, grace: Duration) -> Result<(), DriverError> {
        // The engine counts the grace in whole seconds; round up so it is never shorter.
        let seconds = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
        let options = StopContainerOptionsBuilder::new()
            .t(i32::try_from(seconds).unwrap_or(i32::MAX))
            .build();
        self.docker
            .clone()
            .with_timeout(grace + STOP_SLACK)
            .stop_container(id.as_str(), Some(options))
            .await
            .map_err(|e| on_container(id, e))
    }

    async fn remove(&self, id: &ContainerId) -> Result<(), DriverError> {
        let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
        match self.docker.remove_container(id.as_str(), Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) => match status(&e) {
                // Gone already, or going: either way the caller's goal is reached.
                Some(404) => Ok(()),
                Some(409) if e.to_string().contains("already in progress") => Ok(()),
                _ => Err(generic(e)),
            },
        }
    }

    async fn inspect(&self, id: &ContainerId) -> Result<ContainerStatus, DriverError> {
        let info = self
            .docker
            .inspect_container(id.as_str(), None)
            .await
            .map_err(|e| on_container(id, e))?;
        crate::status::from_inspect(info)
    }

    async fn list(&self, labels: &BTreeMap<String, String>) -> Result<Vec<ContainerStatus>, DriverError> {
        let filters: HashMap<&str, Vec<String>> =
            HashMap::from([("label", labels.iter().map(|(k, v)| format!("{k}={v}")).collect())]);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let summaries = self.docker.list_containers(Some(options)).await.map_err(generic)?;
        // The summary lacks exit codes and times: inspect each one.
        let mut statuses = Vec::with_capacity(summaries.len());
        for id in summaries.into_iter().filter_map(|s| s.id) {
            match self.inspect(&ContainerId(id)).await {
                Ok(status) => statuses.push(status),
                // Removed between list and inspect.
                Err(DriverError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(statuses)
    }

    fn logs(&self, id: &ContainerId, options: LogOptions) -> Logs {
        let tail = options.tail.map_or_else(|| "all".to_string(), |n| n.to_string());
        // Always with timestamps: each line then carries its time, and `since` (whole
        // seconds for the engine) is applied to the millisecond here.
        let mut query = LogsOptionsBuilder::new()
            .follow(options.follow)
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .tail(&tail);
        if let Some(since_ms) = options.since_ms {
            query = query.since(i32::try_from(since_ms / 1000).unwrap_or(i32::MAX));
        }
        let frames = self.docker.logs(id.as_str(), Some(query.build())).boxed();
        crate::logs::lines(id.clone(), frames, options.since_ms)
    }

    async fn exec(&self, id: &ContainerId, cmd: &[String], timeout: Duration) -> Result<ExecOutput, DriverError> {
        crate::exec::run(&self.docker, id, cmd, timeout).await
    }

    async fn exec_stream(&self, id: &ContainerId, req: &ExecRequest) -> Result<ExecSession, DriverError> {
        crate::exec::stream(&self.docker, id, req).await
    }

    async fn stats(&self, id: &ContainerId) -> Result<TaskStats, DriverError> {
        crate::stats::stats(&self.docker, id).await
    }
}
