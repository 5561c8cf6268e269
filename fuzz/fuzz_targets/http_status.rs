#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| herd::fuzzing::http_status(data));
