//! Getting a missing image. A pull that makes progress runs to its deadline (minutes by
//! default, `--pull-deadline`): a large image on a slow link is not cut off. A pull the
//! engine gives up on ends at once, and what it gave up on decides what follows:
//!
//! - **no such image** (the registry answered and has no such repository, tag or digest)
//!   and **no registry** (nothing answers at the registry's address: refused, no such
//!   host, no route) fail the create with `ImageNotFound`, which fails the task: waiting
//!   would not change the answer, and machines without a registry are common;
//! - anything else (the registry failing, a rate limit, the deadline) is an error the task
//!   loop retries later.

use std::time::Duration;

use bollard::errors::Error;
use bollard::query_parameters::CreateImageOptionsBuilder;
use bollard::Docker;
use flotilla_executor::DriverError;
use futures::StreamExt;

/// How long a pull may take in all unless configured (`flotilla agent --pull-deadline`).
pub const DEFAULT_PULL_DEADLINE: Duration = Duration::from_secs(600);

/// What a failed pull means for the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PullFailure {
    /// The registry has no such image: permanent.
    NoSuchImage,
    /// Nothing answers where the registry should be: permanent for this task.
    NoRegistry,
    /// Anything else: worth another try later.
    Other,
}

/// Sorts the engine's message for a failed pull. The engine reports both kinds of
/// permanent failure as text only (its status is 404 for some and 500 for others), so
/// this reads the phrases the engine and the registry protocol use.
pub(crate) fn classify(status: Option<u16>, message: &str) -> PullFailure {
    let m = message.to_ascii_lowercase();
    const NO_SUCH_IMAGE: &[&str] = &[
        "manifest unknown",
        "name unknown",
        "repository does not exist",
        "pull access denied",
        "not found: manifest",
        "no such image",
        "invalid reference format",
    ];
    const NO_REGISTRY: &[&str] = &[
        "connection refused",
        "no such host",
        "network is unreachable",
        "no route to host",
        "server misbehaving",
        "temporary failure in name resolution",
    ];
    if NO_SUCH_IMAGE.iter().any(|p| m.contains(p)) || (status == Some(404) && !m.contains("dial tcp")) {
        PullFailure::NoSuchImage
    } else if NO_REGISTRY.iter().any(|p| m.contains(p)) {
        PullFailure::NoRegistry
    } else {
        PullFailure::Other
    }
}

/// Ok once the image is local; `ImageNotFound` when the registry has no such image or
/// there is no registry; a retryable error for anything else, the deadline included.
pub(crate) async fn pull(docker: &Docker, image: &str, deadline: Duration) -> Result<(), DriverError> {
    let reference = with_default_tag(image);
    let options = CreateImageOptionsBuilder::new().from_image(&reference).build();
    // bollard's own request timeout (two minutes) would cut a long pull short.
    let docker = docker.clone().with_timeout(deadline + Duration::from_secs(60));
    let pull = async {
        let mut progress = docker.create_image(Some(options), None, None);
        let mut updates = 0u64;
        while let Some(item) = progress.next().await {
            item?;
            updates += 1;
        }
        Ok::<u64, Error>(updates)
    };
    let started = std::time::Instant::now();
    match tokio::time::timeout(deadline, pull).await {
        Ok(Ok(updates)) => {
            tracing::info!(
                image,
                updates,
                took_ms = started.elapsed().as_millis() as u64,
                "image pulled"
            );
            Ok(())
        }
        Ok(Err(e)) => {
            let (status, message) = match &e {
                Error::DockerResponseServerError { status_code, message } => (Some(*status_code), message.clone()),
                Error::DockerStreamError { error } => (None, error.clone()),
                other => (None, other.to_string()),
            };
            let failure = classify(status, &message);
            tracing::info!(image, ?failure, error = %message, "pull failed");
            match failure {
                PullFailure::NoSuchImage => Err(DriverError::ImageNotFound {
                    image: image.to_string(),
                    reason: format!("no such image in its registry: {message}"),
                }),
                PullFailure::NoRegistry => Err(DriverError::ImageNotFound {
                    image: image.to_string(),
                    reason: format!("not present locally and no registry reachable: {message}"),
                }),
                PullFailure::Other => match crate::error::generic(e) {
                    // A registry-side failure the engine passes on is worth a retry.
                    DriverError::InvalidSpec(message) | DriverError::Other(message) => Err(DriverError::Engine {
                        status: status.unwrap_or(500).max(500),
                        message: format!("pull of {image} failed: {message}"),
                    }),
                    e => Err(e),
                },
            }
        }
        Err(_) => {
            tracing::warn!(image, ?deadline, "pull still running at its deadline; abandoned");
            Err(DriverError::Timeout {
                what: format!("pull of {image}"),
                after: deadline,
            })
        }
    }
}

/// The engine pulls every tag of a repository when none is given; we want `latest`.
fn with_default_tag(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') || last.contains('@') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untagged_images_get_latest() {
        assert_eq!(with_default_tag("busybox"), "busybox:latest");
        assert_eq!(with_default_tag("flotilla/busybox:1"), "flotilla/busybox:1");
        assert_eq!(with_default_tag("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(with_default_tag("app@sha256:abc"), "app@sha256:abc");
    }

    /// Messages as Docker Engine 28 words them.
    #[test]
    fn the_engine_s_messages_are_sorted_into_what_they_mean() {
        use PullFailure::*;
        let cases: &[(Option<u16>, &str, PullFailure)] = &[
            (
                Some(404),
                "pull access denied for nosuch, repository does not exist or may require 'docker login'",
                NoSuchImage,
            ),
            (
                None,
                "manifest for 127.0.0.1:5000/app:2 not found: manifest unknown: manifest unknown",
                NoSuchImage,
            ),
            (Some(404), "manifest unknown", NoSuchImage),
            (
                Some(500),
                "Get \"https://127.0.0.1:1/v2/\": dial tcp 127.0.0.1:1: connect: connection refused",
                NoRegistry,
            ),
            (
                Some(500),
                "Get \"https://registry.invalid/v2/\": dial tcp: lookup registry.invalid on 127.0.0.53:53: no such host",
                NoRegistry,
            ),
            (
                Some(500),
                "Get \"https://r.example/v2/\": dial tcp 10.0.0.1:443: connect: network is unreachable",
                NoRegistry,
            ),
            (
                Some(500),
                "received unexpected HTTP status: 503 Service Unavailable",
                Other,
            ),
            (
                None,
                "toomanyrequests: You have reached your pull rate limit",
                Other,
            ),
            (None, "unexpected EOF", Other),
        ];
        for (status, message, want) in cases {
            assert_eq!(classify(*status, message), *want, "{message}");
        }
    }
}
