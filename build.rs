//! Puts the commit the binary is built from into `noexecd --version`: `NOEXECD_COMMIT` as the Makefile
//! and the packaging scripts set it (`git rev-parse`), "unknown" without it (a build from a source tarball).
//! Generates KubeArmor's gRPC `LogService` (server, and the client the tests use) from the vendored
//! `proto/kubearmor.proto` with protoc (`make build-deps` installs it).
fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-env-changed=NOEXECD_COMMIT");
    let commit = std::env::var("NOEXECD_COMMIT").ok().filter(|c| !c.trim().is_empty());
    println!("cargo:rustc-env=NOEXECD_COMMIT_ID={}", commit.as_deref().map_or("unknown", str::trim));

    println!("cargo:rerun-if-changed=proto/kubearmor.proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&["proto/kubearmor.proto"], &["proto"])
}
