#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| herd::fuzzing::bench_expr(data));
