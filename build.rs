//! Puts the commit the binary is built from into `noexecd --version`: `NOEXECD_COMMIT` as the Makefile
//! and the packaging scripts set it (`git rev-parse`), "unknown" without it (a build from a source tarball).
fn main() {
    println!("cargo:rerun-if-env-changed=NOEXECD_COMMIT");
    let commit = std::env::var("NOEXECD_COMMIT").ok().filter(|c| !c.trim().is_empty());
    println!("cargo:rustc-env=NOEXECD_COMMIT_ID={}", commit.as_deref().map_or("unknown", str::trim));
}
