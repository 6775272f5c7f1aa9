use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Fixture, Scope};
use crate::{Driver, DriverError};

/// A missing image that cannot be pulled fails create at once with `ImageNotFound`
/// (never a hang on an unreachable registry) and leaves no container behind.
pub async fn missing_image(driver: Arc<dyn Driver>, fixture: &Fixture) {
    if !fixture.check_missing_image {
        eprintln!("[{}] missing_image: skipped by the fixture", driver.name());
        return;
    }
    let scope = Scope::new(driver.clone(), "missing_image");
    scope
        .run(async {
            let image = format!("flotilla/conformance-missing-{}:latest", fixture.run_id);
            let spec = crate::ContainerSpec {
                image: image.clone(),
                ..fixture.spec("missing_image", "true")
            };
            let started = Instant::now();
            match driver.create(&spec).await {
                Err(e @ DriverError::ImageNotFound { .. }) => {
                    // The driver may add its reason: "image not found: IMAGE (no registry …)".
                    let message = e.to_string();
                    assert!(message.starts_with(&format!("image not found: {image}")), "{message}");
                }
                Err(e) => panic!("missing image: expected ImageNotFound, got {e:?}"),
                Ok(id) => {
                    scope.track(id.clone());
                    panic!("created {id} from missing image {image}");
                }
            }
            let took = started.elapsed();
            assert!(took < Duration::from_secs(30), "ImageNotFound took {took:?}");
            let listed = driver.list(&spec.labels).await.expect("list");
            assert!(listed.is_empty(), "failed create left {listed:?}");
        })
        .await;
}
