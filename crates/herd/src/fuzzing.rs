//! The entry points of the fuzz targets (`fuzz/`, `cargo +nightly fuzz run NAME`): each
//! takes the fuzzer's bytes, runs one parser that reads input from outside herd, and
//! asserts what must hold for every input, beyond not panicking. Built only with the
//! `fuzzing` feature; not part of herd's API.

use std::collections::BTreeMap;
use std::path::Path;

use crate::bench::response::Reader;
use crate::channel::framing::{self, Decoder, Frame};

/// The worker channel: bytes split into reads where the fuzzer says, through the framing
/// and every message parser (herd's own messages, Node's cluster protocol). Holds: the
/// decoder never buffers more than [`framing::MAX_LINE`]; a message herd reads encodes and
/// reads back as itself.
pub fn channel(data: &[u8]) {
    let Some((&cut, data)) = data.split_first() else {
        return;
    };
    let step = usize::from(cut).max(1);
    let mut decoder = Decoder::default();
    for chunk in data.chunks(step) {
        decoder.feed_each(chunk, |frame| {
            if let Frame::App(v) | Frame::Internal(v) = &frame {
                let _ = crate::channel::messages::parse(v);
                let _ = crate::channel::node_cluster::parse(v);
                let _ = crate::channel::node_cluster::socket_count(v);
                let _ = crate::channel::node_cluster::sockets_all_closed(v);
                let line = framing::encode(v);
                let mut again = Decoder::default();
                let mut back = Vec::new();
                // The fast path reads Node's exact `NODE_HANDLE_ACK` line as HandleAck; the
                // same object spelt otherwise is Internal, which the channel reads alike.
                again.feed_each(&line, |f| {
                    back.push(match f {
                        Frame::HandleAck => {
                            Frame::Internal(serde_json::json!({"cmd": "NODE_HANDLE_ACK"}))
                        }
                        f => f,
                    })
                });
                assert_eq!(
                    back,
                    vec![frame.clone()],
                    "{v} does not read back as itself"
                );
            }
        });
        assert!(
            decoder.buffered() <= framing::MAX_LINE,
            "the decoder holds {} bytes",
            decoder.buffered()
        );
    }
}

/// One sd_notify datagram.
pub fn notify(data: &[u8]) {
    let _ = crate::channel::notify::parse(data);
}

/// The PROXY protocol header herd writes for a connection from `src` to `dst` (the fuzz
/// target reads it back with an independent parser).
pub fn proxy_header(v2: bool, src: std::net::SocketAddr, dst: std::net::SocketAddr) -> Vec<u8> {
    let version = if v2 {
        crate::proxy::header::Version::V2
    } else {
        crate::proxy::header::Version::V1
    };
    crate::proxy::header::Header::new(version, src, dst)
        .as_bytes()
        .to_vec()
}

/// A herd.toml. Holds: a file herd takes, written back as herd writes it (`herd check`,
/// `herd import`), is taken again as the same apps.
pub fn herd_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for profile in [None, Some("production")] {
        let Ok(file) = crate::config::file::parse(text, "herd.toml", profile) else {
            continue;
        };
        same_apps_again(&file.apps, text);
    }
}

fn same_apps_again(apps: &BTreeMap<String, crate::config::AppConfig>, from: &str) {
    let written = crate::config::file::to_toml(apps);
    match crate::config::file::parse(&written, "written.toml", None) {
        Ok(again) => assert_eq!(
            &again.apps, apps,
            "read back differently:\n--- from ---\n{from}\n--- written ---\n{written}"
        ),
        Err(e) => panic!(
            "herd wrote a file it refuses ({e}):\n--- from ---\n{from}\n--- written ---\n{written}"
        ),
    }
}

/// A PM2 ecosystem file as JSON (first byte even) or YAML (odd), and its mapping to herd's
/// apps. Holds: what `herd import` writes from an accepted file is a herd.toml herd takes.
pub fn ecosystem(data: &[u8]) {
    let Some((&kind, data)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = if kind % 2 == 0 {
        crate::config::ecosystem::parse_json(text, "ecosystem.json")
    } else {
        crate::config::ecosystem::parse_yaml(text, "ecosystem.yaml")
    };
    let Ok(value) = parsed else {
        return;
    };
    for profile in [None, Some("production")] {
        if let Ok(eco) =
            crate::config::ecosystem::from_value(&value, "ecosystem", Path::new("/srv"), profile)
        {
            same_apps_again(&eco.apps, text);
        }
    }
}

/// A request on the daemon's control socket, as the daemon reads it.
pub fn control(data: &[u8]) {
    if let Ok(envelope) = serde_json::from_slice::<crate::control::protocol::Envelope>(data) {
        let text = serde_json::to_string(&envelope).expect("a request serialises");
        serde_json::from_str::<crate::control::protocol::Envelope>(&text)
            .unwrap_or_else(|e| panic!("{text} does not read back: {e}"));
    }
}

/// The values people write in flags and files: durations, sizes, signals, percentages,
/// instances, memory limits, health checks, schedules, app names, listen addresses.
pub fn values(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::units::parse_duration(s);
    let _ = crate::units::parse_size(s);
    let _ = crate::units::parse_signal(s);
    let _ = s.parse::<crate::units::Percent>();
    let _ = s.parse::<crate::config::Instances>();
    let _ = s.parse::<crate::config::MaxMemory>();
    let _ = s.parse::<crate::config::health::HealthCheck>();
    let _ = s.parse::<crate::config::Schedule>();
    let _ = crate::units::is_app_name(s);
    // A host name would ask the resolver (the network): only addresses that need none.
    let literal = s.starts_with("unix:")
        || s.parse::<std::net::SocketAddr>().is_ok()
        || s.rsplit_once(':')
            .is_none_or(|(h, _)| h.parse::<std::net::IpAddr>().is_ok());
    if literal {
        let _ = s.parse::<crate::listen::ListenAddr>();
    }
}

/// The status line of a health check's answer.
pub fn http_status(data: &[u8]) {
    if let Some(code) = crate::driver::health_status(data) {
        assert!((100..1000).contains(&code), "{code}");
    }
}

/// What the dashboard reads itself (hyper reads the HTTP): an action's JSON body (first
/// byte even) or a query value (odd).
pub fn dashboard(data: &[u8]) {
    let Some((&kind, data)) = data.split_first() else {
        return;
    };
    if kind % 2 == 0 {
        let _ = crate::admin::dashboard::parse_action(data);
    } else if let Ok(s) = std::str::from_utf8(data) {
        let decoded = crate::admin::dashboard::percent_decode(s);
        assert!(decoded.len() <= s.len() + 3 * s.len(), "{s:?}");
    }
}

/// `herd bench`'s answer reader, fed the fuzzer's bytes whole and in reads of the size the
/// first byte says (its top bit: answers to HEAD). Holds: it never claims more bytes than
/// it was given, and where neither way fails, both read the same answers (pipelined
/// answers are matched to requests by their order).
pub fn bench_http(data: &[u8]) {
    let Some((&first, data)) = data.split_first() else {
        return;
    };
    let head_only = first & 0x80 != 0;
    let step = usize::from(first & 0x7f).max(1);
    let whole = bench_answers(data, data.len().max(1), Reader::new(head_only));
    let split = bench_answers(data, step, Reader::new(head_only));
    if let (Ok(whole), Ok(split)) = (&whole, &split) {
        assert_eq!(whole, split, "read whole and in reads of {step} bytes");
    }
    // Remembering the previous head (the fast path) reads exactly what parsing each does.
    let parsed = bench_answers(data, step, Reader::forgetful(head_only));
    assert_eq!(
        split, parsed,
        "the remembered head read otherwise than a parse"
    );
}

fn bench_answers(
    data: &[u8],
    step: usize,
    mut reader: Reader,
) -> Result<Vec<crate::bench::response::Answer>, crate::bench::response::ParseError> {
    let mut buf = Vec::new();
    let mut answers = Vec::new();
    for chunk in data.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            let (used, answer) = reader.feed(&buf)?;
            assert!(used <= buf.len(), "{used} of {} bytes used", buf.len());
            buf.drain(..used);
            match answer {
                Some(a) => answers.push(a),
                None => break,
            }
        }
    }
    answers.extend(reader.eof());
    Ok(answers)
}

/// `herd bench --assert` and `--slo` expressions.
pub fn bench_expr(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = crate::bench::check::parse(s);
        let _ = crate::bench::check::parse_slo(s);
    }
}
