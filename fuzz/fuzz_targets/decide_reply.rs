#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::decide_reply::run(data));
