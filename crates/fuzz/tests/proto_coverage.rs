//! Every request message of every RPC in proto/ is decoded by a fuzz target, the one of
//! its service (flotilla_fuzz::SERVICES): adding an RPC without fuzzing its request fails
//! here.

use std::collections::BTreeSet;
use std::path::Path;

/// (service, rpc, request message) of every `rpc` in the proto files under `dir`.
fn rpcs(dir: &Path) -> Vec<(String, String, String)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        if path.is_dir() {
            out.extend(rpcs(&path));
            continue;
        }
        if path.extension().and_then(|e| e.to_str()) != Some("proto") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("a proto file");
        // Without comments, as one line of words: declarations may span lines.
        let code: String = text
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(" ");
        let code = code
            .replace('(', " ( ")
            .replace(')', " ) ")
            .replace('{', " { ")
            .replace('}', " } ");
        let words: Vec<&str> = code.split_whitespace().collect();
        let mut service: Option<String> = None;
        let mut depth = 0usize;
        let mut service_depth = 0usize;
        let mut i = 0;
        while i < words.len() {
            match words[i] {
                "{" => depth += 1,
                "}" => {
                    depth -= 1;
                    if service.is_some() && depth < service_depth {
                        service = None;
                    }
                }
                "service" if i + 2 < words.len() && words[i + 2] == "{" => {
                    service = Some(words[i + 1].to_string());
                    service_depth = depth + 1;
                }
                "rpc" => {
                    let name = words[i + 1].to_string();
                    assert_eq!(words[i + 2], "(", "{}: rpc {name}", path.display());
                    let mut j = i + 3;
                    if words[j] == "stream" {
                        j += 1;
                    }
                    let request = words[j].rsplit('.').next().expect("a type").to_string();
                    let service = service
                        .clone()
                        .unwrap_or_else(|| panic!("{}: rpc {name} outside a service", path.display()));
                    out.push((service, name, request));
                }
                _ => {}
            }
            i += 1;
        }
    }
    out
}

#[test]
fn every_rpc_request_is_fuzzed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let rpcs = rpcs(&dir);
    assert!(
        rpcs.len() >= 30,
        "found only {} rpcs under {}",
        rpcs.len(),
        dir.display()
    );
    let services: BTreeSet<&str> = rpcs.iter().map(|(s, _, _)| s.as_str()).collect();
    assert_eq!(
        services,
        BTreeSet::from(["AgentService", "ClusterService", "RaftService"]),
        "a new service needs its fuzz target (flotilla_fuzz::SERVICES)"
    );
    let mut missing = Vec::new();
    for (service, rpc, request) in &rpcs {
        let Some((_, targets)) = flotilla_fuzz::SERVICES.iter().find(|(s, _)| s == service) else {
            missing.push(format!("{service} has no fuzz target in flotilla_fuzz::SERVICES"));
            continue;
        };
        let decoded = targets.iter().any(|t| {
            let target = flotilla_fuzz::target(t).unwrap_or_else(|| panic!("no target {t}"));
            target.messages.iter().any(|m| m.name == request)
        });
        if !decoded {
            missing.push(format!(
                "{service}.{rpc}: its request {request} is decoded by none of {targets:?}"
            ));
        }
    }
    assert!(missing.is_empty(), "requests not fuzzed:\n{}", missing.join("\n"));
}

#[test]
fn the_parser_reads_a_stream_and_a_multiline_rpc() {
    let dir = std::env::temp_dir().join(format!("flotilla-fuzz-proto-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("x.proto"),
        "service S { // a comment with rpc Fake(Nope)\n  rpc A(stream pkg.Req)\n returns (R);\n  rpc B ( Other ) returns (stream R) {}\n}\nmessage Req {}\n",
    )
    .unwrap();
    let found = rpcs(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        found,
        vec![
            ("S".to_string(), "A".to_string(), "Req".to_string()),
            ("S".to_string(), "B".to_string(), "Other".to_string()),
        ]
    );
}
