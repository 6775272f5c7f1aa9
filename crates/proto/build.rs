fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Vendored protoc: a fresh machine builds without installing one.
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    let root = "../../proto";
    let files = [
        "flotilla/v1/raft.proto",
        "flotilla/v1/cluster.proto",
        "flotilla/v1/agent.proto",
    ]
    .map(|f| format!("{root}/{f}"));
    tonic_prost_build::configure().compile_protos(&files, &[root.to_string()])?;
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    Ok(())
}
