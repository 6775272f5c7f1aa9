//! Pulls of missing images against the real engine and a registry of our own on loopback
//! (the engine treats 127.0.0.0/8 registries as plain HTTP): a pull that makes progress
//! is not cut off at the old 5 s, the deadline still ends one that runs too long, and no
//! such image or no registry fail the create at once.
//!
//! No engine: a failure when CI=true, otherwise a skip notice.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_docker::DockerDriver;
use flotilla_executor::{ContainerSpec, Driver, DriverError};
use sha2::{Digest, Sha256};

async fn connect() -> Option<DockerDriver> {
    match DockerDriver::connect().await {
        Ok(driver) => Some(driver),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true requires a Docker engine: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED pull tests: {e} (with CI=true this fails)");
            None
        }
    }
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// One image: an empty layer and a config unique to this registry, so the engine has to
/// fetch the config from us. The config is sent in pieces, `pause` apart.
struct Image {
    manifest: Vec<u8>,
    config: Vec<u8>,
    config_digest: String,
    layer: Vec<u8>,
    layer_digest: String,
}

impl Image {
    fn new(nonce: &str) -> Image {
        let layer = vec![0u8; 1024]; // an empty tar archive
        let layer_digest = digest(&layer);
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Labels":{{"flotilla.test":"{nonce}"}}}},"rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}}}}"#
        )
        .into_bytes();
        let config_digest = digest(&config);
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{}}}]}}"#,
            config.len(),
            layer.len()
        )
        .into_bytes();
        Image {
            manifest,
            config,
            config_digest,
            layer,
            layer_digest,
        }
    }
}

/// A registry on 127.0.0.1 that speaks as much of the distribution protocol as a pull
/// needs: `/v2/`, manifests of `slow/*` (any tag), blobs. Every other repository is
/// unknown. The config blob trickles out over about `slow_for`.
struct Registry {
    port: u16,
}

impl Registry {
    fn start(slow_for: Duration) -> Registry {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let nonce = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let image = Arc::new(Image::new(&nonce));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let image = image.clone();
                std::thread::spawn(move || serve(conn, &image, slow_for));
            }
        });
        Registry { port }
    }

    fn image(&self, repo: &str, tag: &str) -> String {
        format!("127.0.0.1:{}/{repo}:{tag}", self.port)
    }
}

fn serve(conn: TcpStream, image: &Image, slow_for: Duration) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut out = conn;
    loop {
        let mut request = String::new();
        match reader.read_line(&mut request) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut parts = request.split_whitespace();
        let (Some(method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
            // The engine tries TLS first: not HTTP, so answer like a plain server would.
            let _ = out.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            return;
        };
        if !version.starts_with("HTTP/") {
            let _ = out.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            return;
        }
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (status, ctype, body, slow): (&str, &str, &[u8], bool) = if path == "/v2/" {
            ("200 OK", "application/json", b"{}", false)
        } else if path.starts_with("/v2/slow/manifests/") {
            (
                "200 OK",
                "application/vnd.oci.image.manifest.v1+json",
                &image.manifest,
                false,
            )
        } else if path.ends_with(&image.config_digest) {
            ("200 OK", "application/octet-stream", &image.config, true)
        } else if path.ends_with(&image.layer_digest) {
            ("200 OK", "application/octet-stream", &image.layer, false)
        } else if path.contains("/manifests/") {
            (
                "404 Not Found",
                "application/json",
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
                false,
            )
        } else {
            (
                "404 Not Found",
                "application/json",
                br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}"#,
                false,
            )
        };
        let mut head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n",
            body.len()
        );
        if status.starts_with("200") {
            head.push_str(&format!("Docker-Content-Digest: {}\r\n", digest(body)));
        }
        head.push_str("\r\n");
        if out.write_all(head.as_bytes()).is_err() {
            return;
        }
        if method == "HEAD" {
            continue;
        }
        let sent = if slow {
            let pieces = 10;
            let piece = body.len().div_ceil(pieces);
            body.chunks(piece).all(|chunk| {
                std::thread::sleep(slow_for / pieces as u32);
                out.write_all(chunk).and_then(|_| out.flush()).is_ok()
            })
        } else {
            out.write_all(body).is_ok()
        };
        if !sent {
            return;
        }
    }
}

fn spec(image: &str) -> ContainerSpec {
    ContainerSpec {
        image: image.into(),
        command: vec!["true".into()],
        ..ContainerSpec::default()
    }
}

async fn remove_image(image: &str) {
    let _ = tokio::process::Command::new("docker")
        .args(["rmi", "-f", image])
        .output()
        .await;
}

#[tokio::test]
async fn a_slow_pull_that_makes_progress_finishes_and_the_deadline_ends_one_that_does_not() {
    let Some(driver) = connect().await else { return };
    // About 7 s in all: longer than the 5 s the driver used to allow.
    let registry = Registry::start(Duration::from_secs(7));

    let image = registry.image("slow", "1");
    remove_image(&image).await;
    let started = Instant::now();
    let id = driver
        .create(&spec(&image))
        .await
        .unwrap_or_else(|e| panic!("create with a slow pull: {e}"));
    let took = started.elapsed();
    assert!(took > Duration::from_secs(5), "the pull was not slow: {took:?}");
    driver.remove(&id).await.expect("remove");
    remove_image(&image).await;

    // The same pull under a deadline of 2 s: abandoned, as a retryable timeout.
    let image = registry.image("slow", "2");
    remove_image(&image).await;
    let short = driver.clone().with_pull_deadline(Duration::from_secs(2));
    let started = Instant::now();
    match short.create(&spec(&image)).await {
        Err(e @ DriverError::Timeout { .. }) => {
            assert!(e.is_retryable(), "{e}");
            assert!(e.to_string().contains("pull of"), "{e}");
        }
        other => panic!("expected a pull timeout, got {other:?}"),
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the deadline did not end the pull: {took:?}"
    );
    // The engine drops a pull whose client went away; remove whatever it kept.
    remove_image(&image).await;
}

#[tokio::test]
async fn no_such_image_and_no_registry_fail_the_create_at_once() {
    let Some(driver) = connect().await else { return };
    let registry = Registry::start(Duration::ZERO);

    let started = Instant::now();
    match driver.create(&spec(&registry.image("missing", "1"))).await {
        Err(e @ DriverError::ImageNotFound { .. }) => {
            assert!(!e.is_retryable());
            assert!(e.to_string().contains("no such image"), "{e}");
        }
        other => panic!("expected ImageNotFound, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

    // A port nothing listens on: the registry is not there at all.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let started = Instant::now();
    match driver.create(&spec(&format!("127.0.0.1:{port}/app:1"))).await {
        Err(e @ DriverError::ImageNotFound { .. }) => {
            assert!(!e.is_retryable());
            assert!(e.to_string().contains("no registry reachable"), "{e}");
        }
        other => panic!("expected ImageNotFound, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}
