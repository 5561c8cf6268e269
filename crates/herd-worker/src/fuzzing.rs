//! The entry point of the fuzz target `worker_framing` (`fuzz/`, `cargo +nightly fuzz run
//! worker_framing`): what a worker reads from herd's channel, in reads cut where the
//! fuzzer says. Built only with the `fuzzing` feature; not part of the API.

use crate::framing::{encode, Decoder, Incoming, MAX_LINE};

/// Holds, beyond not panicking: the messages do not depend on where the reads were cut
/// (the same as one read of everything); the decoder never holds more than [`MAX_LINE`];
/// an application message re-encoded reads back as itself.
pub fn framing(data: &[u8]) {
    let Some((&cut, data)) = data.split_first() else {
        return;
    };
    let step = usize::from(cut).max(1);
    let mut cut_up = Decoder::default();
    let mut got = Vec::new();
    for chunk in data.chunks(step) {
        cut_up.feed(chunk, |m| got.push(m));
        assert!(
            cut_up.buffered() <= MAX_LINE,
            "the decoder holds {} bytes",
            cut_up.buffered()
        );
    }
    let mut whole = Decoder::default();
    let mut want = Vec::new();
    whole.feed(data, |m| want.push(m));
    assert_eq!(
        got, want,
        "reads of {step} bytes read otherwise than one read"
    );
    for m in got {
        if let Incoming::App(v) = m {
            let mut again = Decoder::default();
            let mut back = Vec::new();
            again.feed(&encode(&v), |m| back.push(m));
            assert_eq!(
                back,
                vec![Incoming::App(v.clone())],
                "{v} does not read back"
            );
        }
    }
}
