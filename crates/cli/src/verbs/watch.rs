//! `get … --watch`: print, then print again whenever the output changes.

use std::future::Future;
use std::time::Duration;

use crate::error::CliError;

const POLL: Duration = Duration::from_secs(1);

pub async fn repeat<F, Fut>(watch: bool, mut render: F) -> Result<(), CliError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<String, CliError>>,
{
    let mut last = render().await?;
    print!("{last}");
    if !watch {
        return Ok(());
    }
    loop {
        tokio::time::sleep(POLL).await;
        // A failed poll (say, during a leader election) is shown and retried.
        match render().await {
            Ok(text) if text != last => {
                println!();
                print!("{text}");
                last = text;
            }
            Ok(_) => {}
            Err(e) => eprintln!("warning: {e}"),
        }
    }
}
