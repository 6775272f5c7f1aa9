use std::sync::Arc;

use super::wait;
use super::{Fixture, Scope};
use crate::Driver;

/// `ContainerStatus::ip` is where a health probe reaches the workload: a TCP connect to
/// ip:port succeeds once the workload listens on `port`.
pub async fn probe_address(driver: Arc<dyn Driver>, fixture: &Fixture) {
    let scope = Scope::new(driver.clone(), "probe_address");
    scope
        .run(async {
            let port = free_port();
            let script = format!("exec httpd -f -p {}:{port} -h /bin", fixture.listen_host);
            let id = scope.run_container(&fixture.spec("probe_address", &script)).await;
            let ip = wait::running(&driver, &id)
                .await
                .ip
                .expect("a running container has a probe address");
            wait::until(&format!("a listener on {ip}:{port}"), wait::WAIT, || async {
                tokio::net::TcpStream::connect((ip, port)).await.ok().map(drop)
            })
            .await;
        })
        .await;
}

/// A port free on the host right now. Processes share the host's ports, so a fixed one
/// could collide with a parallel run.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}
