//! `get … --watch`: print, then print again whenever what is shown changes — not when only
//! an age ("12s") does. With `-o json` each new or changed object is printed on a line of
//! its own, as it changes, instead of the whole list again.

use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::args::Format;
use crate::error::CliError;
use crate::output::render;

const POLL: Duration = Duration::from_secs(1);

/// What a `get` prints, and the objects it shows, each under its key (a name or an id).
/// `--watch` compares the objects, which carry timestamps rather than ages.
pub struct Listing {
    pub text: String,
    pub objects: Vec<(String, Value)>,
}

impl Listing {
    /// `views` rendered in `out` (`table` for people), keyed by `key`.
    pub fn of<T: Serialize>(
        out: Format,
        views: &[T],
        key: impl Fn(&T) -> String,
        table: impl FnOnce() -> String,
    ) -> Result<Listing, CliError> {
        let objects = views
            .iter()
            .map(|v| {
                Ok((
                    key(v),
                    serde_json::to_value(v).map_err(|e| CliError::Failed(e.to_string()))?,
                ))
            })
            .collect::<Result<_, CliError>>()?;
        Ok(Listing {
            text: render(out, &views, table)?,
            objects,
        })
    }

    /// `-q`: the ids, one per line.
    pub fn ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> Listing {
        let keys: Vec<&str> = ids.into_iter().collect();
        Listing {
            text: crate::output::ids(keys.iter().copied()),
            objects: keys.iter().map(|k| (k.to_string(), Value::Null)).collect(),
        }
    }
}

/// The JSON lines `--watch -o json` prints when the objects go from `last` to `now`: each
/// new or changed object, then `{"deleted": KEY}` for each one gone.
fn changes(last: &[(String, Value)], now: &[(String, Value)]) -> Vec<String> {
    let mut lines: Vec<String> = now
        .iter()
        .filter(|(k, v)| !last.iter().any(|(lk, lv)| lk == k && lv == v))
        .map(|(_, v)| v.to_string())
        .collect();
    lines.extend(
        last.iter()
            .filter(|(k, _)| !now.iter().any(|(nk, _)| nk == k))
            .map(|(k, _)| serde_json::json!({ "deleted": k }).to_string()),
    );
    lines
}

/// Prints `fetch`'s listing; with `watch`, polls and prints again on every change.
/// `json_lines`: stream one object per line (for `-o json`).
pub async fn repeat<F, Fut>(watch: bool, json_lines: bool, mut fetch: F) -> Result<(), CliError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Listing, CliError>>,
{
    let first = fetch().await?;
    if !watch {
        print!("{}", first.text);
        return Ok(());
    }
    if json_lines {
        for line in changes(&[], &first.objects) {
            println!("{line}");
        }
    } else {
        print!("{}", first.text);
    }
    let mut last = first.objects;
    loop {
        tokio::time::sleep(POLL).await;
        // A failed poll (say, during a leader election) is shown and retried.
        match fetch().await {
            Ok(now) if now.objects != last => {
                if json_lines {
                    for line in changes(&last, &now.objects) {
                        println!("{line}");
                    }
                } else {
                    println!();
                    print!("{}", now.text);
                }
                last = now.objects;
            }
            Ok(_) => {}
            Err(e) => eprintln!("warning: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn objects(items: &[(&str, Value)]) -> Vec<(String, Value)> {
        items.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn json_watch_prints_only_what_changed() {
        let before = objects(&[("a", json!({"n": 1})), ("b", json!({"n": 2}))]);
        let after = objects(&[("a", json!({"n": 1})), ("b", json!({"n": 3})), ("c", json!({"n": 4}))]);
        assert_eq!(changes(&before, &after), vec![r#"{"n":3}"#, r#"{"n":4}"#]);
        assert_eq!(changes(&after, &after), Vec::<String>::new());
        assert_eq!(changes(&after, &before), vec![r#"{"n":2}"#, r#"{"deleted":"c"}"#]);
    }

    #[test]
    fn an_age_alone_is_no_change() {
        // Tables show ages, the objects timestamps: two renderings a minute apart differ in
        // text, not in objects, and --watch compares the objects.
        #[derive(Serialize)]
        struct T {
            id: u32,
            updated_at_ms: u64,
        }
        let at = |now: u64| {
            Listing::of(
                Format::Table,
                &[T {
                    id: 1,
                    updated_at_ms: 0,
                }],
                |t| t.id.to_string(),
                || crate::output::age(0, now),
            )
            .expect("listing")
        };
        let (a, b) = (at(1_000), at(61_000));
        assert_ne!(a.text, b.text);
        assert_eq!(a.objects, b.objects);
    }
}
