//! The per-node event buffer: a plain `flotilla events` (since 0) shows what is kept, even
//! once more events than it keeps were recorded; only an explicit `--since` older than the
//! buffer is refused.

use flotilla_store::{StateMachineStore, EVENTS_KEPT};
use flotilla_types::Event;

fn event(index: u64) -> Event {
    Event {
        index,
        at: index,
        kind: "service.updated".into(),
        object: "web".into(),
        message: String::new(),
    }
}

#[test]
fn a_full_buffer_still_answers_everything_kept_and_refuses_only_an_older_since() {
    let dir = tempfile::tempdir().unwrap();
    let sm = StateMachineStore::open(dir.path().join("snapshot/current.snap")).unwrap();
    let state = sm.shared();
    let total = EVENTS_KEPT as u64 + 132;
    state.push_events((1..=total).map(event).collect());

    let (kept, _rx) = state.events_since(0).expect("everything kept");
    assert_eq!(kept.len(), EVENTS_KEPT);
    assert_eq!(kept.first().map(|e| e.index), Some(133));

    assert_eq!(
        state.events_since(5).err(),
        Some(133),
        "an explicit --since older than the buffer"
    );
    let (after, _rx) = state.events_since(132).expect("resumable from just before the oldest");
    assert_eq!(after.len(), EVENTS_KEPT);
}
