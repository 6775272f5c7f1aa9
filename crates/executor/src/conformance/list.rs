use std::collections::BTreeSet;
use std::sync::Arc;

use super::wait;
use super::{Fixture, Scope};
use crate::{ContainerSpec, ContainerState, Driver, LABEL_TASK};

/// list returns exactly the containers carrying all the given labels, created and
/// exited ones included, and nothing for labels no container has.
pub async fn list_by_labels(driver: Arc<dyn Driver>, fixture: &Fixture) {
    let scope = Scope::new(driver.clone(), "list_by_labels");
    scope
        .run(async {
            let spec = |name: &str, task: &str| ContainerSpec {
                labels: fixture.case_labels(task),
                ..fixture.spec(name, "exit 0")
            };
            let exited = scope.run_container(&spec("list-a", "list")).await;
            let created = scope.create(&spec("list-b", "list")).await;
            let other = scope.create(&spec("list-c", "list-other")).await;
            assert_eq!(wait::exited(&driver, &exited).await, 0);

            let ids =
                |statuses: Vec<crate::ContainerStatus>| statuses.into_iter().map(|s| s.id).collect::<BTreeSet<_>>();
            let listed = driver.list(&fixture.case_labels("list")).await.expect("list");
            for status in &listed {
                let expected = if status.id == exited {
                    ContainerState::Exited { code: 0 }
                } else {
                    ContainerState::Created
                };
                assert_eq!(status.state, expected, "{}", status.id);
                assert_eq!(status.labels.get(LABEL_TASK).map(String::as_str), Some("list"));
            }
            assert_eq!(ids(listed), BTreeSet::from([exited.clone(), created.clone()]));

            let listed = driver.list(&fixture.case_labels("list-other")).await.expect("list");
            assert_eq!(ids(listed), BTreeSet::from([other.clone()]));

            // Other cases of this run may have containers too: only a superset here.
            let run = ids(driver.list(&fixture.labels).await.expect("list"));
            assert!(run.is_superset(&BTreeSet::from([exited, created, other])));

            let none = driver.list(&fixture.case_labels("list-nobody")).await.expect("list");
            assert!(none.is_empty(), "no container has these labels: {none:?}");
        })
        .await;
}
