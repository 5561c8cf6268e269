//! `/healthz`, the path herd's health-check tests probe, and the ways `/health?mode=…`
//! makes it misbehave, per process: failing, non-HTTP bytes, a huge body, no answer, a
//! slow answer.

use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use crate::routes::Answer;

/// Size of the body of `/healthz` in `huge` mode: 10 MiB.
pub(crate) const HUGE_LEN: usize = 10 << 20;

/// What `/healthz` answers in `garbage` mode, before closing.
pub(crate) const GARBAGE: &[u8] = b"garbage garbage\n";

/// How `/healthz` answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Mode {
    /// 200 `ok\n`.
    #[default]
    Ok,
    /// 503 `unhealthy\n`.
    Fail,
    /// Bytes that are not HTTP, then close.
    Garbage,
    /// 200 with a body of [`HUGE_LEN`] bytes.
    Huge,
    /// No answer, and the connection is kept open.
    Hold,
    /// 200 `ok\n` after this many milliseconds.
    Slow(u64),
}

impl Mode {
    /// The mode `mode=` (and `ms=` for `slow`) names, or what `/health` answers with 400.
    pub(crate) fn parse(mode: Option<&str>, ms: Option<&str>) -> Result<Mode, &'static str> {
        Ok(match mode {
            Some("ok") => Mode::Ok,
            Some("fail") => Mode::Fail,
            Some("garbage") => Mode::Garbage,
            Some("huge") => Mode::Huge,
            Some("hold") => Mode::Hold,
            Some("slow") => match ms.and_then(|v| v.parse().ok()) {
                Some(ms) => Mode::Slow(ms),
                None => return Err("health mode=slow needs &ms=N\n"),
            },
            _ => return Err("health needs ?mode=ok|fail|garbage|huge|hold|slow&ms=N\n"),
        })
    }

    /// What `/health` answers once the mode is set.
    pub(crate) fn answer(self) -> &'static str {
        match self {
            Mode::Ok => "health ok\n",
            Mode::Fail => "health fail\n",
            Mode::Garbage => "health garbage\n",
            Mode::Huge => "health huge\n",
            Mode::Hold => "health hold\n",
            Mode::Slow(_) => "health slow\n",
        }
    }
}

/// The mode of this process's `/healthz`.
#[derive(Default)]
pub(crate) struct Health(Mutex<Mode>);

impl Health {
    pub(crate) fn set(&self, mode: Mode) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = mode;
    }

    pub(crate) fn get(&self) -> Mode {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Answers `/healthz` (for `slow`, after the sleep).
    pub(crate) fn healthz(&self) -> Answer<'static> {
        match self.get() {
            Mode::Ok => Answer::Text(200, "ok\n"),
            Mode::Fail => Answer::Text(503, "unhealthy\n"),
            Mode::Garbage => Answer::Raw(GARBAGE),
            Mode::Huge => Answer::Big(HUGE_LEN),
            Mode::Hold => Answer::Hold,
            Mode::Slow(ms) => {
                thread::sleep(Duration::from_millis(ms));
                Answer::Text(200, "ok\n")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_modes() {
        assert_eq!(Mode::parse(Some("ok"), None), Ok(Mode::Ok));
        assert_eq!(Mode::parse(Some("fail"), Some("5")), Ok(Mode::Fail));
        assert_eq!(Mode::parse(Some("garbage"), None), Ok(Mode::Garbage));
        assert_eq!(Mode::parse(Some("huge"), None), Ok(Mode::Huge));
        assert_eq!(Mode::parse(Some("hold"), None), Ok(Mode::Hold));
        assert_eq!(Mode::parse(Some("slow"), Some("250")), Ok(Mode::Slow(250)));
        for (mode, ms) in [
            (None, None),
            (Some(""), None),
            (Some("sick"), None),
            (Some("OK"), None),
            (Some("slow"), None),
            (Some("slow"), Some("")),
            (Some("slow"), Some("-1")),
            (Some("slow"), Some("1s")),
        ] {
            assert!(Mode::parse(mode, ms).is_err(), "{mode:?} {ms:?}");
        }
    }

    #[test]
    fn healthz_follows_the_mode() {
        let h = Health::default();
        assert_eq!(h.healthz(), Answer::Text(200, "ok\n"));
        h.set(Mode::Fail);
        assert_eq!(h.healthz(), Answer::Text(503, "unhealthy\n"));
        h.set(Mode::Garbage);
        assert_eq!(h.healthz(), Answer::Raw(b"garbage garbage\n"));
        h.set(Mode::Huge);
        assert_eq!(h.healthz(), Answer::Big(10 * 1024 * 1024));
        h.set(Mode::Hold);
        assert_eq!(h.healthz(), Answer::Hold);
        h.set(Mode::Slow(30));
        let t = std::time::Instant::now();
        assert_eq!(h.healthz(), Answer::Text(200, "ok\n"));
        assert!(t.elapsed() >= Duration::from_millis(30));
        h.set(Mode::Ok);
        assert_eq!(h.healthz(), Answer::Text(200, "ok\n"));
    }
}
