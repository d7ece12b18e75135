//! Link options for the `gantry` binary only (the library and the tests link as before).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        // The binary is position independent, so the loader applies ~17k relative relocations at
        // start. As RELA entries (24 bytes each) they are ~400 KiB that are read once and then stay
        // resident for the life of the process; packed as DT_RELR they are a few KiB (idle RSS).
        // GNU ld >= 2.38 with glibc >= 2.36; an older ld warns and ignores the option.
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
