//! Records what `fluxrig version` prints besides the crate version: the git commit of the
//! checkout (`unknown` outside one, as in a source package) and the target triple.

use std::process::Command;

fn main() {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=FLUXRIG_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=FLUXRIG_TARGET={}", std::env::var("TARGET").unwrap_or_default());
    // A new commit or checkout changes HEAD or the branch it points to.
    for path in ["HEAD", "refs/heads"] {
        if let Some(path) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
