//! Config parsing and validation: any text must give a config or located errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // No environment: `${VAR}` resolves to nothing, so the result depends on the input only.
    if let Err(errors) = gantry::config::load_str_with_env("fuzz.yaml", text, &|_| None) {
        let _ = errors.to_string();
    }
});
