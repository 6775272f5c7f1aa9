//! Issue "See inside a running cluster", item 5: the status page at `/` on every agent's
//! `--metrics-listen` (the testkit binds it on 127.0.0.1 for every agent). Read as a
//! browser reads it: plain HTTP with the token given once in the URL and then a cookie,
//! and loaded in headless Chromium, which saves a screenshot.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use flotilla_testkit::{wait_child, wait_until, Cluster};
use flotilla_tests::{node_status, ok, spec};

const T: Duration = Duration::from_secs(60);

/// How long one Chromium run may take.
const CHROMIUM_LIMIT: Duration = Duration::from_secs(90);

/// One HTTP answer: its status, headers (names lowercased) and body.
#[derive(Debug)]
struct Answer {
    code: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// `GET path` on `addr` with `headers`, as HTTP/1.0 (the server closes when done).
fn get(addr: &str, path: &str, headers: &[(&str, &str)]) -> Option<Answer> {
    let mut stream = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let code = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Answer {
        code,
        headers,
        body: body.to_string(),
    })
}

/// What the page shows for a service of `n` replicas all healthy.
fn all_healthy(n: u32) -> String {
    format!("<span class=\"count ok\">{n}/{n}</span> <span class=\"muted\">healthy</span>")
}

/// The Chromium binary, if one is installed.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

/// Runs headless Chromium with `args` and `url`, its own profile under `profile`, stdout
/// to `out`; panics when it fails or outlives [`CHROMIUM_LIMIT`].
fn run_chromium(bin: &Path, profile: &Path, args: &[String], url: &str, out: &Path) {
    let log = out.with_extension("stderr");
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out).expect("chromium stdout file"))
        .stderr(std::fs::File::create(&log).expect("chromium stderr file"))
        .spawn()
        .expect("start chromium");
    let Some(status) = wait_child(&mut child, CHROMIUM_LIMIT) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "chromium did not finish within {CHROMIUM_LIMIT:?}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    };
    assert!(
        status.success(),
        "chromium failed ({status}): {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

/// Where the screenshot is kept: `$CARGO_TARGET_DIR`, else the target dir this test runs
/// from (`target/<profile>/deps/<test>` → `target`).
fn screenshot_path() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().expect("current exe");
            exe.ancestors().nth(3).expect("the target dir").to_path_buf()
        });
    dir.join("status-page.png")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_the_services_and_their_healthy_counts_to_a_viewer() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(T).await;
    // Every node registered first, so the tasks spread over them.
    wait_until("three nodes ready", T, || {
        node_status(&cluster).filter(|n| n.len() == 3 && n.values().all(|s| s == "ready"))
    });
    let file = cluster.write_file(
        "web.yaml",
        &format!("{}health_check: {{exec: [\"true\"], interval: 1s}}\n", spec("web", 3)),
    );
    ok(cluster.cli(&["apply", "--wait", "-f", file.to_str().expect("utf-8")]));
    let idle = cluster.write_file("batch.yaml", &spec("batch", 0));
    ok(cluster.cli(&["apply", "-f", idle.to_str().expect("utf-8")]));
    let page_of = |id: u64| cluster.agent(id).metrics_addr.clone();

    // (1) Plain HTTP. No token: 401 and a form asking for one.
    for id in cluster.ids() {
        let a = get(&page_of(id), "/", &[]).expect("the page answers");
        assert_eq!(a.code, 401, "{a:?}");
        assert!(a.body.contains("<form method=\"get\" action=\"/\">"), "{}", a.body);
        assert!(a.body.contains("name=\"token\""), "{}", a.body);
        assert!(
            !a.body.contains("web"),
            "nothing of the state without a token: {}",
            a.body
        );
    }
    // A token that is not one, and one the cluster does not know: refused with the reason.
    let a = get(&page_of(leader), "/?token=nonsense", &[]).expect("answer");
    assert_eq!(a.code, 401, "{a:?}");
    assert!(a.body.contains("credential unknown"), "{}", a.body);
    let stranger = format!("flt_{}_{}", "a".repeat(12), "b".repeat(64));
    let a = get(
        &page_of(leader),
        "/",
        &[("Authorization", &format!("Bearer {stranger}"))],
    )
    .expect("answer");
    assert_eq!(a.code, 401, "{a:?}");
    assert!(a.body.contains("no such token in this cluster"), "{}", a.body);

    // A viewer token given once in the URL: checked, kept in a cookie, taken out of the URL.
    let token = ok(cluster.cli(&["token", "create", "--role", "viewer", "--name", "page"]))
        .trim()
        .to_string();
    assert!(token.starts_with("flt_"), "{token}");
    let follower = cluster.ids().into_iter().find(|id| *id != leader).expect("a follower");
    let remembered = wait_until("a follower to know the new token", T, || {
        get(&page_of(follower), &format!("/?token={token}"), &[]).filter(|a| a.code != 401)
    });
    assert!(matches!(remembered.code, 302 | 303), "{remembered:?}");
    assert_eq!(remembered.header("location"), Some("/"));
    let set = remembered.header("set-cookie").expect("a cookie").to_string();
    assert!(set.starts_with(&format!("flotilla_token={token};")), "{set}");
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    let cookie = format!("flotilla_token={token}");

    // With the cookie, every node shows the services and their counts, and the members.
    for id in cluster.ids() {
        let a = wait_until("the page to show web 3/3 healthy", T, || {
            get(&page_of(id), "/", &[("Cookie", &cookie)]).filter(|a| a.code == 200 && a.body.contains(&all_healthy(3)))
        });
        assert_eq!(a.header("content-type"), Some("text/html; charset=utf-8"));
        assert_eq!(a.header("cache-control"), Some("no-store"));
        let html = &a.body;
        assert!(html.contains("data-service=\"web\""), "{html}");
        assert!(html.contains("data-service=\"batch\""), "{html}");
        assert!(html.contains("token &quot;page&quot; (viewer)"), "{html}");
        assert!(html.contains(&format!("leader node {leader}")), "{html}");
        assert_eq!(html.matches("&#9733; leader").count(), 1, "one leader marked: {html}");
        for member in cluster.ids() {
            assert!(html.contains(&cluster.addr(member)), "member {member} listed: {html}");
        }
        assert!(
            html.contains("Tasks by node") && html.matches("web.").count() >= 3,
            "{html}"
        );
        assert!(html.contains("service.created"), "recent events: {html}");
        assert!(html.contains("<script>") && !html.contains("http-equiv"), "{html}");
    }
    // A Bearer header works as well as the cookie.
    let a = get(&page_of(leader), "/", &[("Authorization", &format!("Bearer {token}"))]).expect("answer");
    assert_eq!(a.code, 200, "{a:?}");
    assert!(a.body.contains(&all_healthy(3)), "{}", a.body);
    // /metrics is untouched by the page's gate.
    let m = get(&page_of(leader), "/metrics", &[]).expect("metrics");
    assert_eq!(m.code, 200);

    // (2) Headless Chromium, loading the URL an operator would paste.
    match chromium() {
        Some(bin) => {
            let work = cluster.root().join("chromium");
            std::fs::create_dir_all(&work).expect("chromium dir");
            let url = format!("http://{}/?token={token}", page_of(leader));
            let dom = work.join("dom.html");
            // Five seconds of the page's life: its script fetches and swaps it in twice.
            let args = ["--dump-dom".into(), "--virtual-time-budget=5000".into()];
            run_chromium(&bin, &work.join("profile-dom"), &args, &url, &dom);
            let dom = std::fs::read_to_string(&dom).expect("the dumped DOM");
            assert!(dom.contains("data-service=\"web\""), "the DOM lacks the service: {dom}");
            assert!(dom.contains(&all_healthy(3)), "the DOM lacks 3/3 healthy: {dom}");
            assert!(
                !dom.contains("name=\"token\""),
                "the cookie did not carry the token: {dom}"
            );
            assert!(
                dom.contains("data-refreshes=\""),
                "the page did not refresh itself: {dom}"
            );

            let shot = screenshot_path();
            let _ = std::fs::remove_file(&shot);
            run_chromium(
                &bin,
                &work.join("profile-shot"),
                &[
                    format!("--screenshot={}", shot.display()),
                    "--window-size=1280,900".into(),
                ],
                &url,
                &work.join("shot.out"),
            );
            let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
            assert!(
                size > 10 * 1024,
                "{} is {size} bytes: too small for the page",
                shot.display()
            );
            let png = std::fs::read(&shot).expect("the screenshot");
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
            // docs/status-page.png is a copy of one of these, refreshed by hand: a test
            // does not write into the repository.
            println!("status page screenshot: {}", shot.display());
        }
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("chromium is not installed; CI needs it for the status page test (scripts/deps.sh installs it)")
        }
        None => eprintln!("status_page: chromium not installed; skipping the headless browser half"),
    }

    // (3) A revoked token: refused on the next load, with the reason, and its cookie dropped.
    ok(cluster.cli(&["token", "revoke", "page"]));
    for id in cluster.ids() {
        let a = wait_until("the revocation to reach the node", T, || {
            get(&page_of(id), "/", &[("Cookie", &cookie)]).filter(|a| a.code == 401)
        });
        assert!(a.body.contains("credential revoked"), "{}", a.body);
        assert!(a.body.contains("name=\"token\""), "the form again: {}", a.body);
        assert!(!a.body.contains("data-service"), "{}", a.body);
        let cleared = a.header("set-cookie").expect("the cookie dropped");
        assert!(
            cleared.starts_with("flotilla_token=;") && cleared.contains("Max-Age=0"),
            "{cleared}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insecure_node_shows_the_page_without_a_token() {
    let cluster = Cluster::builder(1).insecure().start();
    cluster.wait_for_leader(T).await;
    let file = cluster.write_file("web.yaml", &spec("web", 2));
    ok(cluster.cli(&["apply", "--wait", "-f", file.to_str().expect("utf-8")]));
    let addr = cluster.agent(1).metrics_addr.clone();
    let a = wait_until("the page to show web 2/2 running", T, || {
        get(&addr, "/", &[]).filter(|a| a.code == 200 && a.body.contains("<span class=\"count ok\">2/2</span>"))
    });
    assert!(a.body.contains("data-service=\"web\""), "{}", a.body);
    assert!(!a.body.contains("name=\"token\""), "{}", a.body);
}
