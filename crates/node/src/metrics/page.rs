//! The status page: `GET /` on the metrics listener. One server-rendered HTML page from this
//! node's replica (services with their healthy/desired counts, tasks by node, the last
//! events, rollouts in progress) and the status fan-out (members and the leader), with a
//! few lines of inline script that fetch it again every two seconds. No external assets,
//! no frontend build, nothing it can change.
//!
//! The listener is plain HTTP, so the page is served only when it is bound to a loopback
//! address (reach it from elsewhere through an SSH tunnel); on a secured node it also asks
//! for a client token of role viewer or above, once: `/?token=flt_…` is checked, kept in an
//! HttpOnly cookie and taken out of the URL by a redirect. An `Authorization: Bearer`
//! header works too. An `--insecure` node asks for nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use flotilla_proto::v1::{MemberRole, MemberStatus};
use flotilla_scheduler::RolloutReport;
use flotilla_types::{ClientRole, DesiredState, Event, TaskState};

use crate::node::{now_ms, Node};

/// The cookie that keeps the token once given.
pub const COOKIE: &str = "flotilla_token";

/// How often the page fetches itself again.
pub const REFRESH_MS: u64 = 2000;

/// How many of the newest events the page shows.
pub const EVENTS_SHOWN: usize = 20;

/// What a request for the page gets, decided before anything is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// The listener is not on a loopback address: 403, the page is not served here.
    NotLoopback,
    /// The page; `who` names the token ("" on an `--insecure` node).
    Serve { who: String },
    /// A good token in the URL: keep it in the cookie and send the browser to `/`.
    Remember(String),
    /// No token: 401 and a form asking for one.
    Ask,
    /// A token that was refused, and why (401 and the form); `clear_cookie` when it came
    /// from the cookie, which is then dropped.
    Refused { reason: String, clear_cookie: bool },
}

/// The credentials a request carries, wherever they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Presented {
    /// `?token=` (decoded).
    pub query: Option<String>,
    /// `Authorization: Bearer …`.
    pub bearer: Option<String>,
    /// The `flotilla_token` cookie.
    pub cookie: Option<String>,
}

impl Presented {
    pub fn of(uri: &Uri, headers: &HeaderMap) -> Presented {
        let nonempty = |s: String| {
            let s = s.trim().to_string();
            (!s.is_empty()).then_some(s)
        };
        let query = uri.query().and_then(|q| query_param(q, "token"));
        let bearer = headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == COOKIE)
            .map(|(_, v)| v.to_string());
        Presented {
            query: query.and_then(nonempty),
            bearer: bearer.and_then(nonempty),
            cookie: cookie.and_then(nonempty),
        }
    }
}

/// Whether `addr` is a loopback address (127.0.0.0/8, ::1, or either mapped).
pub fn is_loopback(addr: SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

/// Decides what a request gets: `listener` is where the metrics listener is bound (`None`
/// when unknown), `secured` whether the node has TLS (and so tokens), `check` the token
/// table's verdict on a token (its name and role, or the refusal the CLI would print).
pub fn gate(
    listener: Option<SocketAddr>,
    secured: bool,
    presented: &Presented,
    check: impl Fn(&str) -> Result<(String, ClientRole), String>,
) -> Gate {
    if !listener.is_some_and(is_loopback) {
        return Gate::NotLoopback;
    }
    if !secured {
        return Gate::Serve { who: String::new() };
    }
    let verdict = |token: &str| match check(token) {
        Ok((name, role)) if role >= ClientRole::Viewer => Ok(format!("token {name:?} ({role})")),
        Ok((name, role)) => Err(format!(
            "credential not allowed: token {name:?} is a {role} token; the status page needs viewer"
        )),
        Err(reason) => Err(reason),
    };
    let refused = |reason: String, clear_cookie: bool| Gate::Refused { reason, clear_cookie };
    if let Some(t) = &presented.query {
        return match verdict(t) {
            Ok(_) => Gate::Remember(t.clone()),
            Err(reason) => refused(reason, false),
        };
    }
    if let Some(t) = &presented.bearer {
        return verdict(t).map_or_else(|r| refused(r, false), |who| Gate::Serve { who });
    }
    if let Some(t) = &presented.cookie {
        return verdict(t).map_or_else(|r| refused(r, true), |who| Gate::Serve { who });
    }
    Gate::Ask
}

/// `GET /` on the metrics listener bound at `listener`.
pub async fn serve(node: Arc<Node>, listener: Option<SocketAddr>, uri: Uri, headers: HeaderMap) -> Response {
    let presented = Presented::of(&uri, &headers);
    let decision = gate(listener, node.tls.is_some(), &presented, |t| {
        crate::auth::token_of(&node, t).map_err(|s| s.message().to_string())
    });
    match decision {
        Gate::NotLoopback => {
            let at = listener.map_or_else(|| "an unknown address".to_string(), |a| a.to_string());
            (
                StatusCode::FORBIDDEN,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!(
                    "the status page is served on a loopback --metrics-listen only (127.0.0.1 or ::1); this \
                     listener is on {at}, which is plain HTTP.\nReach it through an SSH tunnel: run the agent \
                     with --metrics-listen 127.0.0.1:9100, then `ssh -L 9100:127.0.0.1:9100 <node>` and open \
                     http://127.0.0.1:9100/\n"
                ),
            )
                .into_response()
        }
        Gate::Ask => ask_page(None, false),
        Gate::Refused { reason, clear_cookie } => ask_page(Some(&reason), clear_cookie),
        Gate::Remember(token) => {
            let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
            let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            secure_headers(r.headers_mut());
            r
        }
        Gate::Serve { who } => {
            let view = View::of(&node, who).await;
            let mut r = (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                view.render(),
            )
                .into_response();
            secure_headers(r.headers_mut());
            r
        }
    }
}

/// No caching (the page holds the cluster's state), no framing, no referrer (the first
/// request's URL holds the token), nothing loaded from elsewhere.
fn secure_headers(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
}

/// The 401 page: why the last token was refused (if one was), and a form for a token.
fn ask_page(reason: Option<&str>, clear_cookie: bool) -> Response {
    let mut html = String::new();
    html.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    html.push_str("<title>flotilla status: token needed</title>");
    let _ = write!(html, "<style>{CSS}</style></head><body><div class=\"ask\">");
    html.push_str("<h1>flotilla status</h1>");
    if let Some(r) = reason {
        let _ = write!(html, "<p class=\"refused bad\">{}</p>", escape(r));
    }
    html.push_str(
        "<p>This node shows its status to holders of a client token of role viewer or above. An admin \
         makes one with <code>flotilla token create --role viewer</code>.</p>\
         <form method=\"get\" action=\"/\"><label>Token \
         <input name=\"token\" type=\"password\" autocomplete=\"off\" size=\"60\" placeholder=\"flt_…\" \
         autofocus required></label> <button type=\"submit\">Show the status</button></form>\
         <p class=\"muted\">The token is checked, kept in an HttpOnly cookie for this address and taken \
         out of the URL.</p></div></body></html>\n",
    );
    let mut r = (
        StatusCode::UNAUTHORIZED,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::WWW_AUTHENTICATE, "Bearer realm=\"flotilla\""),
        ],
        html,
    )
        .into_response();
    if clear_cookie {
        r.headers_mut().insert(
            header::SET_COOKIE,
            HeaderValue::from_static("flotilla_token=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"),
        );
    }
    secure_headers(r.headers_mut());
    r
}

/// `s` safe as HTML text and as a quoted attribute value.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The value of `key` in a query string, percent-decoded (`+` is a space); the first one.
pub fn query_param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k) == key).then(|| percent_decode(v))
        })
        .next()
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| Some(hex(bytes[i + 1])? << 4 | hex(bytes[i + 2])?))
            .flatten();
        match (bytes[i], escaped) {
            (_, Some(b)) => {
                out.push(b);
                i += 2;
            }
            (b'+', None) => out.push(b' '),
            (b, None) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One service's line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceRow {
    pub name: String,
    pub image: String,
    pub version: u64,
    pub desired: u32,
    /// Current tasks that run (healthy or not checked).
    pub running: u32,
    /// Of those, the ones that passed their health check.
    pub healthy: u32,
    /// Whether the service has a health check (its healthy count is then the one to watch).
    pub checked: bool,
}

/// One task's line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskRow {
    pub id: String,
    pub service: String,
    pub state: String,
    pub since: u64,
    pub message: String,
}

/// The tasks of one node (`id` `None`: not placed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeTasks {
    pub id: Option<u64>,
    pub address: String,
    /// ready or down, and its availability; empty for a node the state does not hold.
    pub status: String,
    pub availability: String,
    pub tasks: Vec<TaskRow>,
}

/// Everything the page shows, read at once.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// The node that answers.
    pub node: u64,
    /// Who is looking ("" on an `--insecure` node).
    pub who: String,
    pub now: u64,
    pub applied: u64,
    pub leader: Option<u64>,
    pub members: Vec<MemberStatus>,
    pub services: Vec<ServiceRow>,
    pub nodes: Vec<NodeTasks>,
    /// Newest first.
    pub events: Vec<Event>,
    pub rollouts: Vec<RolloutReport>,
}

impl View {
    /// Reads `node`'s replica and asks every member for its status.
    pub async fn of(node: &Node, who: String) -> View {
        let mut members = node.statuses(node.members()).await;
        members.sort_by_key(|m| m.id);
        let now = now_ms();
        let m = node.raft.metrics().borrow().clone();
        let events: Vec<Event> = node
            .state
            .events_since(0)
            .map(|(past, _)| past.into_iter().rev().take(EVENTS_SHOWN).collect())
            .unwrap_or_default();
        let sm = node.state.read();
        let state = &sm.state;
        let services = state
            .services
            .values()
            .map(|svc| {
                let current = state
                    .tasks
                    .values()
                    .filter(|t| t.service == svc.spec.name && t.desired == DesiredState::Running);
                let (mut running, mut healthy) = (0, 0);
                for t in current {
                    running += u32::from(matches!(t.state, TaskState::Running | TaskState::Healthy));
                    healthy += u32::from(t.state == TaskState::Healthy);
                }
                ServiceRow {
                    name: svc.spec.name.clone(),
                    image: svc.spec.image.clone(),
                    version: svc.version,
                    desired: svc.spec.replicas,
                    running,
                    healthy,
                    checked: svc.spec.health_check.is_some(),
                }
            })
            .collect();
        let mut by_node: BTreeMap<Option<u64>, Vec<TaskRow>> = BTreeMap::new();
        let mut tasks: Vec<_> = state
            .tasks
            .values()
            .filter(|t| t.desired == DesiredState::Running || !t.state.is_terminal())
            .collect();
        tasks.sort_by(|a, b| (&a.service, a.slot, a.seq).cmp(&(&b.service, b.slot, b.seq)));
        for t in tasks {
            by_node.entry(t.node).or_default().push(TaskRow {
                id: t.id.clone(),
                service: t.service.clone(),
                state: t.state.as_str().to_string(),
                since: if t.state_since > 0 { t.state_since } else { t.updated_at },
                message: t.message.clone(),
            });
        }
        let mut nodes: Vec<NodeTasks> = state
            .nodes
            .values()
            .map(|n| NodeTasks {
                id: Some(n.id),
                address: n.address.clone(),
                status: n.status.as_str().to_string(),
                availability: n.availability.as_str().to_string(),
                tasks: by_node.remove(&Some(n.id)).unwrap_or_default(),
            })
            .collect();
        // Tasks on nodes the state no longer holds, then the ones not placed.
        let unplaced = by_node.remove(&None);
        nodes.extend(by_node.into_iter().map(|(id, tasks)| NodeTasks {
            id,
            tasks,
            ..Default::default()
        }));
        if let Some(tasks) = unplaced {
            nodes.push(NodeTasks {
                id: None,
                tasks,
                ..Default::default()
            });
        }
        let rollouts = state
            .services
            .values()
            .filter(|s| s.rollout.as_ref().is_some_and(|r| r.phase.is_active()))
            .map(|s| flotilla_scheduler::rollout_report(s, state.tasks.values(), now))
            .collect();
        View {
            node: node.id,
            who,
            now,
            applied: sm.last_applied.map_or(0, |l| l.index),
            leader: m.current_leader,
            members,
            services,
            nodes,
            events,
            rollouts,
        }
    }

    /// The whole page.
    pub fn render(&self) -> String {
        let mut h = String::with_capacity(16 * 1024);
        h.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
        let _ = write!(h, "<title>flotilla status: node {}</title>", self.node);
        let _ = write!(h, "<style>{CSS}</style></head><body>\n<div id=\"page\">");
        self.header(&mut h);
        h.push_str("<main>");
        self.services(&mut h);
        self.members(&mut h);
        self.rollouts(&mut h);
        self.tasks(&mut h);
        self.events(&mut h);
        h.push_str("</main></div>\n");
        let _ = write!(
            h,
            "<script>{}</script>",
            SCRIPT.replace("REFRESH_MS", &REFRESH_MS.to_string())
        );
        h.push_str("</body></html>\n");
        h
    }

    fn header(&self, h: &mut String) {
        let leader = self.leader.map_or_else(
            || "<span class=\"bad\">no leader known</span>".to_string(),
            |l| format!("leader node {l}"),
        );
        let _ = write!(
            h,
            "<header><h1>flotilla</h1><span>node {} &middot; {} &middot; applied index {}</span>\
             <span class=\"right\"><span id=\"stale\" class=\"bad\"></span> {}refreshed every {}s</span></header>",
            self.node,
            leader,
            self.applied,
            if self.who.is_empty() {
                String::new()
            } else {
                format!("viewing with {} &middot; ", escape(&self.who))
            },
            REFRESH_MS / 1000,
        );
    }

    fn services(&self, h: &mut String) {
        h.push_str("<section id=\"services\" class=\"wide\"><h2>Services</h2>");
        if self.services.is_empty() {
            h.push_str("<p class=\"muted\">No services.</p></section>");
            return;
        }
        h.push_str(
            "<table><tr><th>Service</th><th>Ready</th><th>Desired</th><th>Running</th><th>Healthy</th>\
             <th>Image</th><th>Version</th></tr>",
        );
        for s in &self.services {
            let (ready, word) = if s.checked {
                (s.healthy, "healthy")
            } else {
                (s.running, "running")
            };
            let class = if ready >= s.desired {
                "ok"
            } else if ready == 0 {
                "bad"
            } else {
                "warn"
            };
            let _ = write!(
                h,
                "<tr class=\"service\" data-service=\"{name}\"><td class=\"name\">{name}</td>\
                 <td><span class=\"count {class}\">{ready}/{desired}</span> <span class=\"muted\">{word}</span></td>\
                 <td>{desired}</td><td>{running}</td><td>{healthy}</td><td><code>{image}</code></td><td>{version}</td></tr>",
                name = escape(&s.name),
                desired = s.desired,
                running = s.running,
                healthy = if s.checked { s.healthy.to_string() } else { "&ndash;".to_string() },
                image = escape(&s.image),
                version = s.version,
            );
        }
        h.push_str("</table></section>");
    }

    fn members(&self, h: &mut String) {
        h.push_str(
            "<section id=\"members\"><h2>Members</h2><table><tr><th>Node</th><th>Address</th><th>Role</th>\
             <th>Reachable</th><th>Applied</th><th>Term</th></tr>",
        );
        for m in &self.members {
            let leads = self.leader == Some(m.id);
            let role = if m.reachable { role_word(m.role()) } else { "?" };
            let reach = if m.reachable {
                "<span class=\"ok\">yes</span>".to_string()
            } else {
                format!("<span class=\"bad\" title=\"{e}\">no: {e}</span>", e = escape(&m.error))
            };
            let _ = write!(
                h,
                "<tr><td>{}{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                m.id,
                if leads {
                    " <span class=\"leader\">&#9733; leader</span>"
                } else {
                    ""
                },
                escape(&m.address),
                role,
                reach,
                if m.reachable {
                    m.applied_index.to_string()
                } else {
                    "&ndash;".into()
                },
                if m.reachable {
                    m.term.to_string()
                } else {
                    "&ndash;".into()
                },
            );
        }
        h.push_str("</table></section>");
    }

    fn rollouts(&self, h: &mut String) {
        h.push_str("<section id=\"rollouts\"><h2>Rollouts in progress</h2>");
        if self.rollouts.is_empty() {
            h.push_str("<p class=\"muted\">None.</p></section>");
            return;
        }
        h.push_str(
            "<table><tr><th>Service</th><th>Phase</th><th>Versions</th><th>Updated</th><th>Serving</th>\
             <th>Done</th><th>Waiting for</th></tr>",
        );
        for r in &self.rollouts {
            let phase = match &r.paused {
                Some(p) => format!(
                    "{} <span class=\"warn\">(paused: {})</span>",
                    escape(&r.phase),
                    escape(p)
                ),
                None => escape(&r.phase),
            };
            let _ = write!(
                h,
                "<tr><td class=\"name\">{}</td><td>{}</td><td>{} &rarr; {}</td><td>{}/{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td></tr>",
                escape(&r.service),
                phase,
                r.from_version,
                r.to_version,
                r.updated,
                r.replicas,
                r.serving,
                r.done,
                escape(&r.waiting),
            );
        }
        h.push_str("</table></section>");
    }

    fn tasks(&self, h: &mut String) {
        h.push_str("<section id=\"tasks\"><h2>Tasks by node</h2>");
        if self.nodes.is_empty() {
            h.push_str("<p class=\"muted\">No nodes registered.</p>");
        }
        for n in &self.nodes {
            let title = match n.id {
                Some(id) => format!("node {id}"),
                None => "not placed".to_string(),
            };
            let status_class = if n.status == "ready" { "ok" } else { "bad" };
            let _ = write!(h, "<h3>{title}");
            if !n.address.is_empty() {
                let _ = write!(h, " <code>{}</code>", escape(&n.address));
            }
            if !n.status.is_empty() {
                let _ = write!(
                    h,
                    " <span class=\"{status_class}\">{}</span> <span class=\"muted\">{}</span>",
                    escape(&n.status),
                    escape(&n.availability)
                );
            }
            h.push_str("</h3>");
            if n.tasks.is_empty() {
                h.push_str("<p class=\"muted\">No tasks.</p>");
                continue;
            }
            h.push_str("<table><tr><th>Task</th><th>Service</th><th>State</th><th>Since</th></tr>");
            for t in &n.tasks {
                let _ = write!(
                    h,
                    "<tr><td><code>{}</code></td><td>{}</td><td><span class=\"{}\">{}</span>{}</td><td>{}</td></tr>",
                    escape(&t.id),
                    escape(&t.service),
                    state_class(&t.state),
                    escape(&t.state),
                    if t.message.is_empty() {
                        String::new()
                    } else {
                        format!(" <span class=\"muted\">{}</span>", escape(&t.message))
                    },
                    ago(self.now, t.since),
                );
            }
            h.push_str("</table>");
        }
        h.push_str("</section>");
    }

    fn events(&self, h: &mut String) {
        let _ = write!(h, "<section id=\"events\"><h2>Recent events <span class=\"muted\">(last {EVENTS_SHOWN}, newest first)</span></h2>");
        if self.events.is_empty() {
            h.push_str("<p class=\"muted\">None kept on this node.</p></section>");
            return;
        }
        h.push_str("<table><tr><th>Age</th><th>Kind</th><th>Object</th><th>Message</th></tr>");
        for e in &self.events {
            let _ = write!(
                h,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                ago(self.now, e.at),
                escape(&e.kind),
                escape(&e.object),
                escape(&e.message),
            );
        }
        h.push_str("</table></section>");
    }
}

fn role_word(r: MemberRole) -> &'static str {
    match r {
        MemberRole::Leader => "leader",
        MemberRole::Follower => "follower",
        MemberRole::Candidate => "candidate",
        MemberRole::Learner => "learner",
        MemberRole::Shutdown => "shutdown",
        MemberRole::Unspecified => "?",
    }
}

fn state_class(state: &str) -> &'static str {
    match state {
        "running" | "healthy" => "ok",
        "pending" | "assigned" | "starting" => "warn",
        "unhealthy" | "failed" | "lost" => "bad",
        _ => "muted",
    }
}

/// How long ago `at` was, shortly: `4s`, `12m`, `3h`, `2d` (`-` for never).
pub fn ago(now: u64, at: u64) -> String {
    if at == 0 {
        return "-".into();
    }
    let s = now.saturating_sub(at) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

const CSS: &str = "\
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;background:#f4f5f7;color:#1d2330}\
header{background:#1d2330;color:#e8ebf0;padding:10px 20px;display:flex;gap:18px;align-items:baseline;flex-wrap:wrap}\
header h1{font-size:19px;margin:0;color:#fff}header .right{margin-left:auto;color:#aab2bf;font-size:12px}\
main{padding:14px 20px;display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:14px}\
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:10px 14px;min-width:0}\
section.wide{grid-column:1/-1}h2{font-size:15px;margin:0 0 8px}h3{font-size:13px;margin:10px 0 4px}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eef0f3;vertical-align:top}\
th{font-weight:600;color:#5a6372;font-size:11px;text-transform:uppercase;letter-spacing:.03em}\
td.name{font-weight:600}.count{font-size:20px;font-weight:700}.leader{color:#8a5a00;font-weight:600}\
.ok{color:#147a3c}.warn{color:#a86400}.bad{color:#b3261e}.muted{color:#7a8391}\
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace}\
.ask{max-width:640px;margin:60px auto;background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:20px 24px}\
.ask input{font:13px ui-monospace,monospace;padding:4px}.ask button{padding:4px 12px}";

/// Fetches the page again every REFRESH_MS and swaps it in (counting the swaps on
/// `<body data-refreshes>`); a page that is no longer 200 (the token was revoked) is
/// loaded as a whole, to show why.
const SCRIPT: &str = "\
(function(){var swaps=0;\
function tick(){\
fetch(location.pathname,{cache:'no-store',credentials:'same-origin'})\
.then(function(r){if(r.status!==200){location.reload();return null;}return r.text();})\
.then(function(t){if(!t)return;var n=new DOMParser().parseFromString(t,'text/html').getElementById('page');\
var o=document.getElementById('page');if(n&&o){o.replaceWith(n);document.body.dataset.refreshes=++swaps;}})\
.catch(function(){var s=document.getElementById('stale');if(s)s.textContent='node not answering; this is the last view';})\
.finally(function(){setTimeout(tick,REFRESH_MS);});}\
setTimeout(tick,REFRESH_MS);})();";

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "flt_000000000001_good";

    fn loopback() -> Option<SocketAddr> {
        Some("127.0.0.1:9100".parse().unwrap())
    }

    /// A token table with one viewer token (`GOOD`) and one revoked token.
    fn table(t: &str) -> Result<(String, ClientRole), String> {
        match t {
            GOOD => Ok(("ops".into(), ClientRole::Viewer)),
            "flt_000000000002_admin" => Ok(("root".into(), ClientRole::Admin)),
            "flt_000000000003_revoked" => Err("credential revoked: token \"old\" was revoked".into()),
            _ => Err("credential unknown: no such token in this cluster".into()),
        }
    }

    fn with(query: Option<&str>, bearer: Option<&str>, cookie: Option<&str>) -> Presented {
        Presented {
            query: query.map(String::from),
            bearer: bearer.map(String::from),
            cookie: cookie.map(String::from),
        }
    }

    #[test]
    fn escape_leaves_no_markup() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(escape("web.0.12"), "web.0.12");
        assert_eq!(escape("é ✓"), "é ✓");
    }

    #[test]
    fn the_page_escapes_every_string_from_the_state() {
        let evil = "<img src=x onerror=alert(1)>";
        let view = View {
            node: 1,
            who: format!("token \"{evil}\" (viewer)"),
            now: 10_000,
            leader: Some(1),
            members: vec![MemberStatus {
                id: 1,
                address: evil.into(),
                reachable: false,
                error: evil.into(),
                ..Default::default()
            }],
            services: vec![ServiceRow {
                name: evil.into(),
                image: evil.into(),
                desired: 3,
                running: 3,
                healthy: 2,
                checked: true,
                version: 1,
            }],
            nodes: vec![NodeTasks {
                id: Some(1),
                address: evil.into(),
                status: evil.into(),
                availability: evil.into(),
                tasks: vec![TaskRow {
                    id: evil.into(),
                    service: evil.into(),
                    state: evil.into(),
                    since: 1,
                    message: evil.into(),
                }],
            }],
            events: vec![Event {
                index: 1,
                at: 1,
                kind: evil.into(),
                object: evil.into(),
                message: evil.into(),
            }],
            rollouts: vec![RolloutReport {
                service: evil.into(),
                version: 2,
                template_version: 2,
                phase: evil.into(),
                from_version: 1,
                to_version: 2,
                paused: Some(evil.into()),
                reason: String::new(),
                cause: String::new(),
                replicas: 3,
                updated: 1,
                serving: 1,
                done: 0,
                failures: 0,
                parallelism: 1,
                order: "stop-first".into(),
                monitor_ms: 0,
                delay_ms: 0,
                failure_action: "pause".into(),
                waiting: evil.into(),
                started_at: 1,
                updated_at: 1,
                batches: vec![],
                moves: vec![],
            }],
            applied: 7,
        };
        let html = view.render();
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        // The healthy count of a checked service is the one shown big.
        assert!(html.contains("<span class=\"count warn\">2/3</span>"), "{html}");
        // No meta refresh; the script refreshes.
        assert!(!html.contains("http-equiv"));
        assert!(html.contains("setTimeout(tick,2000)"), "{html}");
    }

    #[test]
    fn the_page_counts_running_for_a_service_without_a_check() {
        let view = View {
            services: vec![ServiceRow {
                name: "web".into(),
                image: "busybox".into(),
                desired: 3,
                running: 3,
                ..Default::default()
            }],
            ..Default::default()
        };
        let html = view.render();
        assert!(
            html.contains("<span class=\"count ok\">3/3</span> <span class=\"muted\">running</span>"),
            "{html}"
        );
    }

    #[test]
    fn the_page_is_served_on_a_loopback_listener_only() {
        let insecure = with(None, None, None);
        for addr in ["127.0.0.1:9100", "127.3.4.5:1", "[::1]:9100", "[::ffff:127.0.0.1]:9100"] {
            assert_eq!(
                gate(Some(addr.parse().unwrap()), false, &insecure, table),
                Gate::Serve { who: String::new() },
                "{addr}"
            );
        }
        for addr in ["0.0.0.0:9100", "10.0.0.11:9100", "[::]:9100", "[2001:db8::1]:9100"] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_eq!(gate(Some(addr), false, &insecure, table), Gate::NotLoopback, "{addr}");
            // Not even with a good token.
            assert_eq!(
                gate(Some(addr), true, &with(None, None, Some(GOOD)), table),
                Gate::NotLoopback
            );
        }
        assert_eq!(gate(None, false, &insecure, table), Gate::NotLoopback);
    }

    #[test]
    fn an_insecure_node_asks_for_no_token() {
        let bad = with(Some("nonsense"), None, None);
        assert_eq!(gate(loopback(), false, &bad, table), Gate::Serve { who: String::new() });
    }

    #[test]
    fn a_secured_node_asks_for_a_token_and_checks_it() {
        let g = |p: Presented| gate(loopback(), true, &p, table);
        assert_eq!(g(with(None, None, None)), Gate::Ask);
        // Given in the URL: remembered, then served from the cookie or a header.
        assert_eq!(g(with(Some(GOOD), None, None)), Gate::Remember(GOOD.into()));
        let served = Gate::Serve {
            who: "token \"ops\" (viewer)".into(),
        };
        assert_eq!(g(with(None, None, Some(GOOD))), served);
        assert_eq!(g(with(None, Some(GOOD), None)), served);
        assert_eq!(
            g(with(None, Some("flt_000000000002_admin"), None)),
            Gate::Serve {
                who: "token \"root\" (admin)".into()
            }
        );
        // Refused, with the CLI's reason; a bad cookie is dropped.
        assert_eq!(
            g(with(Some("flt_000000000003_revoked"), None, None)),
            Gate::Refused {
                reason: "credential revoked: token \"old\" was revoked".into(),
                clear_cookie: false
            }
        );
        assert_eq!(
            g(with(None, None, Some("flt_000000000003_revoked"))),
            Gate::Refused {
                reason: "credential revoked: token \"old\" was revoked".into(),
                clear_cookie: true
            }
        );
        assert!(matches!(
            g(with(None, Some("junk"), None)),
            Gate::Refused { reason, clear_cookie: false } if reason.starts_with("credential unknown")
        ));
        // A new token in the URL wins over an old cookie.
        assert_eq!(
            g(with(Some(GOOD), None, Some("flt_000000000003_revoked"))),
            Gate::Remember(GOOD.into())
        );
    }

    #[test]
    fn credentials_are_read_from_the_query_the_header_and_the_cookie() {
        let uri: Uri = "/?x=1&token=flt_abc%5Fdef+&y".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer flt_h"));
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; flotilla_token=flt_c; d=e"),
        );
        assert_eq!(
            Presented::of(&uri, &headers),
            with(Some("flt_abc_def"), Some("flt_h"), Some("flt_c"))
        );
        // An empty form field counts as none.
        let uri: Uri = "/?token=".parse().unwrap();
        assert_eq!(Presented::of(&uri, &HeaderMap::new()), Presented::default());
        assert_eq!(query_param("a=%zz%4", "a").as_deref(), Some("%zz%4"));
        assert_eq!(query_param("a=1", "b"), None);
    }

    #[test]
    fn ages_are_short() {
        assert_eq!(ago(10_000, 0), "-");
        assert_eq!(ago(10_000, 4_000), "6s");
        assert_eq!(ago(200_000, 1), "3m");
        assert_eq!(ago(4 * 3_600_000, 1), "3h");
        assert_eq!(ago(3 * 86_400_000, 1), "2d");
    }
}
