//! `onoal import` lines from users: never a panic; an accepted line is a valid entry.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onoal_engine::import::parse_line;

fuzz_target!(|data: &[u8]| {
    if let Ok(line) = std::str::from_utf8(data) {
        if let Ok(entry) = parse_line(line, 1 << 16) {
            assert!(entry.validate(1 << 16).is_ok());
            assert!(entry.payload.len() <= 1 << 16);
        }
    }
});
