//! Links the `channelgate` binary with packed relative relocations
//! (`DT_RELR`) on glibc Linux.
//!
//! A position-independent executable (kept for ASLR) carries one relocation
//! per pointer in its read-only data: 44,000 of them, 1 MiB of `.rela.dyn`
//! that the dynamic loader reads, and so keeps resident, at every start.
//! Packed, they take 13 KiB: the binary is 1 MB smaller and its resident
//! memory about 0.75 MiB (BENCHMARKS.md, issue #16 round 5; applying them
//! takes about as long either way, 0.04 ms). Linking it needs binutils 2.38
//! or lld 15, running it glibc 2.36 (Debian 12, the Dockerfile's images);
//! `CHANNELGATE_NO_RELR=1` builds without it for an older glibc.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CHANNELGATE_NO_RELR");
    let target = |name: &str| std::env::var(name).unwrap_or_default();
    let wanted = std::env::var_os("CHANNELGATE_NO_RELR").is_none_or(|v| v.is_empty() || v == "0");
    if wanted && target("CARGO_CFG_TARGET_OS") == "linux" && target("CARGO_CFG_TARGET_ENV") == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
