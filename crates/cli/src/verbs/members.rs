//! `node remove ID`.

use flotilla_proto::v1::RemoveNodeRequest;
use serde::Serialize;

use crate::args::Format;
use crate::client::Client;
use crate::error::CliError;
use crate::output::print;

#[derive(Serialize)]
struct Removed {
    id: u64,
    was_voter: bool,
    drained_tasks: u32,
    promoted: Vec<u64>,
}

pub async fn remove(client: &Client, out: Format, id: u64) -> Result<(), CliError> {
    let r = client.send(RemoveNodeRequest { id }).await?;
    let v = Removed {
        id: r.id,
        was_voter: r.was_voter,
        drained_tasks: r.drained_tasks,
        promoted: r.promoted,
    };
    print(out, &v, || {
        let mut text = format!(
            "node/{} removed ({}",
            v.id,
            if v.was_voter { "was a voter" } else { "was a learner" }
        );
        if v.drained_tasks > 0 {
            text.push_str(&format!(", {} task(s) moved first", v.drained_tasks));
        }
        if !v.promoted.is_empty() {
            let ids: Vec<String> = v.promoted.iter().map(u64::to_string).collect();
            text.push_str(&format!(", promoted node(s) {} to voter", ids.join(",")));
        }
        text.push_str("); its id is never reused\n");
        text
    })
}
