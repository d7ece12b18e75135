//! Path normalisation: never panics, and its output is normal (normalising it again changes
//! nothing), starts with `/`, has no `//`, no `.`/`..` segment and no control character.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(normal) = gantry::router::normalize_path(raw) else {
        return;
    };
    assert!(normal.starts_with('/'), "{raw:?} -> {normal:?}");
    assert!(!normal.contains("//"), "{raw:?} -> {normal:?}");
    assert!(
        !normal.split('/').any(|s| s == "." || s == ".."),
        "{raw:?} -> {normal:?}"
    );
    assert!(
        !normal.bytes().any(|b| b < 0x20 || b == 0x7f),
        "{raw:?} -> {normal:?}"
    );
    let again = gantry::router::normalize_path(&normal).expect("a normal path stays valid");
    assert_eq!(again, normal, "not idempotent for {raw:?}");
});
