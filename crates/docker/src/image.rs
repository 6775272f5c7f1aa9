//! Getting a missing image: one pull attempt with a short deadline. Machines here often
//! have no registry at all, and a create must fail fast with `ImageNotFound` rather than
//! hang on a pull that cannot succeed.

use std::time::Duration;

use bollard::query_parameters::CreateImageOptionsBuilder;
use bollard::Docker;
use flotilla_executor::DriverError;
use futures::TryStreamExt;

const PULL_TIMEOUT: Duration = Duration::from_secs(5);

/// Ok once the image is local; `ImageNotFound` when the pull fails or runs out of time.
pub(crate) async fn pull(docker: &Docker, image: &str) -> Result<(), DriverError> {
    let reference = with_default_tag(image);
    let options = CreateImageOptionsBuilder::new().from_image(&reference).build();
    let pull = docker.create_image(Some(options), None, None).try_collect::<Vec<_>>();
    let not_found = || DriverError::ImageNotFound {
        image: image.to_string(),
    };
    match tokio::time::timeout(PULL_TIMEOUT, pull).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => match crate::error::generic(e) {
            // The engine itself is gone: that is not a verdict on the image.
            e @ DriverError::Unavailable(_) => Err(e),
            e => {
                tracing::debug!(image, error = %e, "pull failed");
                Err(not_found())
            }
        },
        Err(_) => {
            tracing::debug!(image, "pull timed out after {PULL_TIMEOUT:?}");
            Err(not_found())
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
}
