//! Generates the ess.v1 stubs (messages, client, and the server trait used by the tests'
//! fake sidecar) from ../../proto/ess/v1/guard.proto at build time, with the protoc that
//! the protoc-bin-vendored crate ships: no system protoc is needed.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest.join("../../proto");
    let proto = proto_root.join("ess/v1/guard.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    println!("cargo:rerun-if-changed=build.rs");

    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let well_known = protoc_bin_vendored::include_path()?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .compile_with_config(config, &[proto], &[proto_root, well_known])?;
    Ok(())
}
