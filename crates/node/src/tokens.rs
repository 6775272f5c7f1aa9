//! The credential RPCs, declared like every leader-routed one: client tokens (create,
//! list, revoke) and the join token (show, rotate). Who may call them is in
//! `auth::TABLE` (admin).

use flotilla_proto::v1::{CaStatusRequest, CaStatusResponse, RotateCaRequest};
use flotilla_proto::v1::{
    CreateTokenRequest, CreateTokenResponse, GetJoinTokenRequest, JoinTokenResponse, ListTokensRequest,
    ListTokensResponse, RevokeTokenRequest, RevokeTokenResponse, RotateJoinTokenRequest, TokenInfo,
};
use flotilla_security::cred;
use flotilla_security::identity::pem_digest;
use flotilla_security::Ca;
use flotilla_types::{ClientRole, ClientToken, Command, Security, SecurityOp};

use crate::cluster_service::ClusterApi;
use crate::error::ApiError;
use crate::node::now_ms;
use crate::routed::{Kind, Routed};

/// Longest token name.
const MAX_NAME: usize = 63;

fn security_command(op: SecurityOp) -> Command {
    Command::Security {
        op,
        by: crate::auth::current().token_name(),
        at: now_ms(),
    }
}

fn with_security<T>(api: &ClusterApi, f: impl FnOnce(&Security) -> T) -> Result<T, ApiError> {
    let sm = api.node.state.read();
    sm.state
        .security
        .as_ref()
        .map(f)
        .ok_or_else(|| ApiError::Refused("this cluster has no CA (it runs --insecure): it has no tokens".into()))
}

pub struct NewToken {
    name: Option<String>,
    role: ClientRole,
    ttl_ms: Option<u64>,
}

impl Routed for CreateTokenRequest {
    type Input = NewToken;
    const KIND: Kind = Kind::Write;
    fn prepare(&self) -> Result<NewToken, ApiError> {
        let role = ClientRole::parse(&self.role)
            .ok_or_else(|| ApiError::Invalid(format!("--role {:?}: must be admin, operator or viewer", self.role)))?;
        let name = self.name.trim();
        if name.len() > MAX_NAME
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(ApiError::Invalid(format!(
                "--name {name:?}: at most {MAX_NAME} letters, digits, '-', '_' or '.'"
            )));
        }
        Ok(NewToken {
            name: (!name.is_empty()).then(|| name.to_string()),
            role,
            ttl_ms: (self.ttl_ms > 0).then_some(self.ttl_ms),
        })
    }
    async fn run(api: &ClusterApi, input: &NewToken) -> Result<CreateTokenResponse, ApiError> {
        let (token, id, hash) = cred::new_client_token();
        let now = now_ms();
        let name = input.name.clone().unwrap_or_else(|| format!("{}-{id}", input.role));
        let expires_at = input.ttl_ms.map(|t| now.saturating_add(t));
        let op = SecurityOp::CreateToken {
            name: name.clone(),
            token: ClientToken {
                id,
                hash,
                role: input.role,
                created_at: now,
                expires_at,
                revoked_at: None,
            },
        };
        api.node.command(security_command(op)).await?;
        Ok(CreateTokenResponse {
            name,
            token,
            role: input.role.to_string(),
            expires_at: expires_at.unwrap_or(0),
        })
    }
}

impl Routed for ListTokensRequest {
    type Input = ();
    const KIND: Kind = Kind::Read;
    fn prepare(&self) -> Result<(), ApiError> {
        Ok(())
    }
    async fn run(api: &ClusterApi, _: &()) -> Result<ListTokensResponse, ApiError> {
        with_security(api, |s| ListTokensResponse {
            tokens: s
                .tokens
                .iter()
                .map(|(name, t)| TokenInfo {
                    name: name.clone(),
                    role: t.role.to_string(),
                    created_at: t.created_at,
                    expires_at: t.expires_at.unwrap_or(0),
                    revoked_at: t.revoked_at.unwrap_or(0),
                    id: t.id.clone(),
                })
                .collect(),
        })
    }
}

impl Routed for RevokeTokenRequest {
    type Input = String;
    const KIND: Kind = Kind::Write;
    fn prepare(&self) -> Result<String, ApiError> {
        let name = self.name.trim();
        if name.is_empty() {
            return Err(ApiError::Invalid(
                "which token? give its name (flotilla token list)".into(),
            ));
        }
        Ok(name.to_string())
    }
    async fn run(api: &ClusterApi, name: &String) -> Result<RevokeTokenResponse, ApiError> {
        let op = SecurityOp::RevokeToken { name: name.clone() };
        api.node.command(security_command(op)).await?;
        Ok(RevokeTokenResponse {})
    }
}

fn join_token(s: &Security) -> String {
    cred::NodeToken::join(&pem_digest(&s.ca_cert), &s.join_secret).to_string()
}

impl Routed for GetJoinTokenRequest {
    type Input = ();
    const KIND: Kind = Kind::Read;
    fn prepare(&self) -> Result<(), ApiError> {
        Ok(())
    }
    async fn run(api: &ClusterApi, _: &()) -> Result<JoinTokenResponse, ApiError> {
        with_security(api, |s| JoinTokenResponse { token: join_token(s) })
    }
}

impl Routed for RotateJoinTokenRequest {
    type Input = ();
    const KIND: Kind = Kind::Write;
    fn prepare(&self) -> Result<(), ApiError> {
        Ok(())
    }
    async fn run(api: &ClusterApi, _: &()) -> Result<JoinTokenResponse, ApiError> {
        let op = SecurityOp::RotateJoin {
            secret: cred::new_secret(),
        };
        api.node.command(security_command(op)).await?;
        with_security(api, |s| JoinTokenResponse { token: join_token(s) })
    }
}

/// The CA as the leader holds it, and which CA each member's certificate is of.
async fn ca_status(api: &ClusterApi) -> Result<CaStatusResponse, ApiError> {
    let (ca_pem, digest, previous_digest) = with_security(api, |s| {
        (
            s.trust_bundle(),
            pem_digest(&s.ca_cert),
            s.previous_ca.as_deref().map(pem_digest).unwrap_or_default(),
        )
    })?;
    Ok(CaStatusResponse {
        ca_pem,
        digest,
        previous_digest,
        members: api.node.statuses(api.node.members()).await,
    })
}

impl Routed for CaStatusRequest {
    type Input = ();
    const KIND: Kind = Kind::Read;
    fn prepare(&self) -> Result<(), ApiError> {
        Ok(())
    }
    async fn run(api: &ClusterApi, _: &()) -> Result<CaStatusResponse, ApiError> {
        ca_status(api).await
    }
}

impl Routed for RotateCaRequest {
    type Input = ();
    const KIND: Kind = Kind::Write;
    fn prepare(&self) -> Result<(), ApiError> {
        Ok(())
    }
    async fn run(api: &ClusterApi, _: &()) -> Result<CaStatusResponse, ApiError> {
        let (cert, key, rotating) =
            with_security(api, |s| (s.ca_cert.clone(), s.ca_key.clone(), s.previous_ca.is_some()))?;
        if rotating {
            return Err(ApiError::Refused(
                "a CA rotation is in progress; it finishes once every member holds a certificate of the new \
                 CA (flotilla ca status shows which do not yet)"
                    .into(),
            ));
        }
        let current = Ca::from_pem(&cert, &key).map_err(|e| ApiError::Internal(e.to_string()))?;
        let (next, cross_cert) = current
            .successor(std::time::SystemTime::now())
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let op = SecurityOp::RotateCa {
            ca_cert: next.cert_pem.clone(),
            ca_key: next.key_pem(),
            cross_cert,
        };
        api.node.command(security_command(op)).await?;
        ca_status(api).await
    }
}
