//! `flotilla token …`: node tokens and client tokens.

use flotilla_proto::v1::{
    CreateTokenRequest, GetJoinTokenRequest, ListTokensRequest, RevokeTokenRequest, RotateJoinTokenRequest,
};
use serde::Serialize;

use crate::args::{Format, TokenWhat};
use crate::client::Client;
use crate::error::CliError;
use crate::output::{age, now_ms, print, table};

#[derive(Serialize)]
struct TokenView {
    name: String,
    role: String,
    id: String,
    created_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked_at: Option<u64>,
    /// active, expired or revoked.
    state: &'static str,
}

#[derive(Serialize)]
struct Created {
    name: String,
    role: String,
    token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<u64>,
}

#[derive(Serialize)]
struct NodeTokenView {
    token: String,
}

/// `token generate`: a new bootstrap token, printed (no cluster involved).
pub fn generate(out: Format) -> Result<(), CliError> {
    let token = flotilla_security::NodeToken::new_bootstrap().to_string();
    print(out, &NodeTokenView { token: token.clone() }, || format!("{token}\n"))
}

pub async fn run(client: &Client, out: Format, what: TokenWhat) -> Result<(), CliError> {
    match what {
        TokenWhat::Generate => generate(out),
        TokenWhat::Create {
            role,
            ttl,
            name,
            write_config,
        } => {
            let r = client
                .send(CreateTokenRequest {
                    name: name.unwrap_or_default(),
                    role,
                    ttl_ms: ttl.map_or(0, |t| t.as_millis() as u64),
                })
                .await?;
            if let Some(path) = write_config {
                client.write_config(&path, &r.token)?;
                eprintln!("wrote a client config with token {:?} to {}", r.name, path.display());
            }
            let view = Created {
                name: r.name,
                role: r.role,
                token: r.token,
                expires_at: (r.expires_at > 0).then_some(r.expires_at),
            };
            print(out, &view, || {
                eprintln!(
                    "token {:?} ({}{}); shown once, the cluster keeps only its hash",
                    view.name,
                    view.role,
                    view.expires_at
                        .map(|e| format!(", expires {}", crate::verbs::expires_in(e, now_ms())))
                        .unwrap_or_default()
                );
                format!("{}\n", view.token)
            })
        }
        TokenWhat::List => {
            let r = client.send(ListTokensRequest {}).await?;
            let now = now_ms();
            let views: Vec<TokenView> = r
                .tokens
                .into_iter()
                .map(|t| TokenView {
                    state: if t.revoked_at > 0 {
                        "revoked"
                    } else if t.expires_at > 0 && t.expires_at <= now {
                        "expired"
                    } else {
                        "active"
                    },
                    name: t.name,
                    role: t.role,
                    id: t.id,
                    created_at: t.created_at,
                    expires_at: (t.expires_at > 0).then_some(t.expires_at),
                    revoked_at: (t.revoked_at > 0).then_some(t.revoked_at),
                })
                .collect();
            print(out, &views, || {
                let rows: Vec<Vec<String>> = views
                    .iter()
                    .map(|t| {
                        vec![
                            t.name.clone(),
                            t.role.clone(),
                            t.state.to_string(),
                            age(t.created_at, now),
                            t.expires_at
                                .map_or("never".into(), |e| crate::verbs::expires_in(e, now)),
                        ]
                    })
                    .collect();
                table(&["NAME", "ROLE", "STATE", "AGE", "EXPIRES"], &rows)
            })
        }
        TokenWhat::Revoke { name } => {
            client.send(RevokeTokenRequest { name: name.clone() }).await?;
            print(out, &serde_json::json!({ "revoked": name }), || {
                format!("token {name:?} revoked\n")
            })
        }
        TokenWhat::Join => {
            let r = client.send(GetJoinTokenRequest {}).await?;
            print(out, &NodeTokenView { token: r.token.clone() }, || {
                format!("{}\n", r.token)
            })
        }
        TokenWhat::RotateJoin => {
            let r = client.send(RotateJoinTokenRequest {}).await?;
            print(out, &NodeTokenView { token: r.token.clone() }, || {
                eprintln!("the previous join token no longer admits nodes");
                format!("{}\n", r.token)
            })
        }
    }
}
