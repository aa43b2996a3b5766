//! Fuzz target: the Host header → container name parsing the proxy does on every request.
//! Never panics; a name it finds is a single lower-case label that the Host really carries.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    // The first byte picks how long the base domain is; the rest splits into base and host.
    let Some((&split, rest)) = input.split_first() else {
        return;
    };
    let split = usize::from(split).min(rest.len());
    let (Ok(base), Ok(host)) = (
        std::str::from_utf8(&rest[..split]),
        std::str::from_utf8(&rest[split..]),
    ) else {
        return;
    };
    for base in [base, "localhost", "example.com"] {
        if let Some(name) = dormant::proxy::host::name_from_host(host, base) {
            assert!(
                !name.is_empty() && !name.contains('.'),
                "{host:?} gave {name:?}"
            );
            assert!(!name.bytes().any(|b| b.is_ascii_uppercase()), "{name:?}");
            assert!(
                host.to_ascii_lowercase().starts_with(&*name),
                "{name:?} is not the first label of {host:?}"
            );
        }
    }
});
