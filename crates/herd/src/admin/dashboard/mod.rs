//! The web dashboard, served by the admin listener at `/`: one page compiled into the
//! binary (no CDN, nothing fetched at run time), live through server-sent events.
//!
//! Routes: `/` and its script and style; `/events` (the stream of every app's state, a
//! frame a second, with five minutes of history first); `/logs?app=NAME&slot=N` (the
//! worker's log file, followed); `/api/access` (whether a token lets this page act);
//! `POST /api/action` (reload, restart, stop, scale an app).
//!
//! Who may do what (SECURITY.md): reading needs nothing more than reaching the listener,
//! which binds where the operator said (`127.0.0.1` in every example). Actions need the
//! token the daemon writes at start to `HERD_HOME/dashboard.token` (0600), sent in the
//! `X-Herd-Token` header: a cross-site page cannot send that header without a CORS
//! preflight this listener never grants, so a form or an image cannot act. `herd run`'s
//! listener has no token: it is read-only. On a loopback listener, a `Host` that is not a
//! loopback name is refused, so a DNS-rebinding page cannot read it either. Environment
//! values never reach a page: apps are shown with their variables' names only.

mod hub;
mod tail;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

pub use hub::{Hub, MAX_STREAMS};

use super::{Action, Probe, Verb};

/// The page, its script and its style, compiled in.
const PAGE: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/dashboard.js");
const STYLE: &str = include_str!("page/dashboard.css");

/// The header an action's token comes in.
pub const TOKEN_HEADER: &str = "x-herd-token";
/// The largest action body read.
const MAX_ACTION: usize = 4096;
/// The longest an action's outcome is waited for (a reload of many slow workers).
const ACTION_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// A streamed answer: frames from a hub or a log tail, while the page reads them.
pub struct Stream {
    rx: mpsc::Receiver<Bytes>,
    _permit: OwnedSemaphorePermit,
}

impl hyper::body::Body for Stream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// Any answer of the admin listener.
pub type Body = http_body_util::Either<Full<Bytes>, Stream>;

/// What a dashboard request needs of its listener.
pub struct Site {
    /// The frames of `/events`.
    pub hub: Arc<Hub>,
    /// Streams open at once (`/events` and `/logs`), at most [`MAX_STREAMS`].
    pub streams: Arc<Semaphore>,
    /// The token actions need; `None`: read-only.
    pub token: Option<String>,
    /// The listener is on loopback: `Host` must name loopback too.
    pub loopback: bool,
    /// Where questions go.
    pub probes: mpsc::UnboundedSender<Probe>,
}

/// Whether `path` is the dashboard's.
pub fn owns(path: &str) -> bool {
    matches!(
        path,
        "/" | "/dashboard.js"
            | "/dashboard.css"
            | "/events"
            | "/logs"
            | "/api/access"
            | "/api/action"
    )
}

/// Answers a dashboard request. `streaming` is called when the answer becomes a stream, so
/// the connection is no longer bound by the request time limit.
pub async fn answer(
    site: &Site,
    req: Request<Incoming>,
    streaming: impl FnOnce(),
) -> Response<Body> {
    if site.loopback && !loopback_host(&req) {
        return plain(
            StatusCode::MISDIRECTED_REQUEST,
            "this admin listener is on loopback: open it as 127.0.0.1, [::1] or localhost\n",
        );
    }
    match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/") => file(PAGE, "text/html; charset=utf-8"),
        (&Method::GET | &Method::HEAD, "/dashboard.js") => {
            file(SCRIPT, "text/javascript; charset=utf-8")
        }
        (&Method::GET | &Method::HEAD, "/dashboard.css") => file(STYLE, "text/css; charset=utf-8"),
        (&Method::GET, "/events") => match site.streams.clone().try_acquire_owned() {
            Ok(permit) => {
                streaming();
                stream(site.hub.subscribe().rx, permit)
            }
            Err(_) => too_many(),
        },
        (&Method::GET, "/logs") => logs(site, &req, streaming).await,
        (&Method::GET, "/api/access") => {
            let (status, json) = match allowed(site, &req) {
                Ok(()) => (StatusCode::OK, serde_json::json!({"actions": true})),
                Err((_, why)) => (
                    StatusCode::OK,
                    serde_json::json!({"actions": false, "why": why}),
                ),
            };
            json_answer(status, &json)
        }
        (&Method::POST, "/api/action") => act(site, req).await,
        (_, path) => plain(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("{path} does not take {}\n", req.method()),
        ),
    }
}

/// `Host` names loopback (or is absent, as from a client that is no browser).
fn loopback_host(req: &Request<Incoming>) -> bool {
    let Some(host) = req.headers().get(hyper::header::HOST) else {
        return true;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether this request may act: the listener has a token and the request carries it.
fn allowed(site: &Site, req: &Request<Incoming>) -> Result<(), (StatusCode, String)> {
    let Some(token) = &site.token else {
        return Err((
            StatusCode::FORBIDDEN,
            "read-only: this admin listener takes no actions (herd run's has no token; the daemon's dashboard, from `herd dashboard`, does)".into(),
        ));
    };
    let given = req
        .headers()
        .get(TOKEN_HEADER)
        .map(|v| v.as_bytes())
        .filter(|v| !v.is_empty());
    match given {
        Some(given) if same(given, token.as_bytes()) => Ok(()),
        Some(_) => Err((
            StatusCode::FORBIDDEN,
            "read-only: the token is not this daemon's (it changes at every daemon start: `herd dashboard` prints the current URL)".into(),
        )),
        None => Err((
            StatusCode::FORBIDDEN,
            "read-only: actions need the token; open the URL `herd dashboard` prints".into(),
        )),
    }
}

/// Compares in time independent of where the two differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `POST /api/action`: `{"app": NAME, "verb": "reload"|"restart"|"stop"|"scale", "by": ±N}`.
/// Answered as soon as the loop took it (202); its outcome reaches every page as a
/// `notice` event.
async fn act(site: &Site, req: Request<Incoming>) -> Response<Body> {
    if let Err((status, why)) = allowed(site, &req) {
        return json_answer(status, &serde_json::json!({ "error": why }));
    }
    let body = match Limited::new(req.into_body(), MAX_ACTION).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return json_answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                &serde_json::json!({"error": format!("an action is at most {MAX_ACTION} bytes of JSON")}),
            )
        }
    };
    let action = match parse_action(&body) {
        Ok(a) => a,
        Err(e) => return json_answer(StatusCode::BAD_REQUEST, &serde_json::json!({ "error": e })),
    };
    let what = action.to_string();
    let asked = format!("{what}: asked");
    let (reply, rx) = oneshot::channel();
    if site.probes.send(Probe::Act { action, reply }).is_err() {
        return json_answer(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"error": "herd is stopping"}),
        );
    }
    let hub = site.hub.clone();
    tokio::spawn(async move {
        match tokio::time::timeout(ACTION_WAIT, rx).await {
            Ok(Ok(Ok(done))) => hub.notice(true, &done),
            Ok(Ok(Err(why))) => hub.notice(false, &format!("{what}: {why}")),
            Ok(Err(_)) => hub.notice(false, &format!("{what}: herd stopped before it ended")),
            Err(_) => hub.notice(
                false,
                &format!("{what}: no outcome after {} s", ACTION_WAIT.as_secs()),
            ),
        }
    });
    json_answer(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "message": asked }),
    )
}

pub(crate) fn parse_action(body: &[u8]) -> Result<Action, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        app: String,
        verb: String,
        #[serde(default)]
        by: Option<i64>,
    }
    let raw: Raw = serde_json::from_slice(body).map_err(|e| format!("not an action: {e}"))?;
    let verb = match (raw.verb.as_str(), raw.by) {
        ("reload", None) => Verb::Reload,
        ("restart", None) => Verb::Restart,
        ("stop", None) => Verb::Stop,
        ("scale", Some(by)) if by != 0 => Verb::Scale(by),
        ("scale", _) => {
            return Err("scale needs `by`: a number of workers to add (or remove, below 0)".into())
        }
        (verb, _) => {
            return Err(format!(
                "unknown verb `{verb}`: reload, restart, stop or scale (with `by`)"
            ))
        }
    };
    Ok(Action { app: raw.app, verb })
}

/// `/logs?app=NAME&slot=N`: the worker's log file, followed.
async fn logs(site: &Site, req: &Request<Incoming>, streaming: impl FnOnce()) -> Response<Body> {
    let query = req.uri().query().unwrap_or("");
    let mut app = None;
    let mut slot = None;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        match k {
            "app" => app = Some(v),
            "slot" => slot = v.parse::<usize>().ok(),
            _ => {}
        }
    }
    let Some(app) = app else {
        return plain(
            StatusCode::BAD_REQUEST,
            "/logs needs ?app=NAME (and &slot=N)\n",
        );
    };
    let (reply, rx) = oneshot::channel();
    if site
        .probes
        .send(Probe::LogPath { app, slot, reply })
        .is_err()
    {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "herd is stopping\n");
    }
    let files = match tokio::time::timeout(super::LOOP_ANSWER, rx).await {
        Ok(Ok(Ok(files))) => files,
        Ok(Ok(Err(why))) => return plain(StatusCode::NOT_FOUND, &format!("{why}\n")),
        _ => {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "herd's loop did not answer\n",
            )
        }
    };
    let Ok(permit) = site.streams.clone().try_acquire_owned() else {
        return too_many();
    };
    let (tx, rx) = mpsc::channel(8 * files.len().max(1));
    for (name, path) in files {
        tokio::spawn(tail::follow(name, path, tx.clone()));
    }
    streaming();
    stream(rx, permit)
}

/// `%XX` and `+` of a query value.
pub(crate) fn percent_decode(v: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) => hex(*hi).zip(hex(*lo)).map(|(h, l)| h * 16 + l),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn stream(rx: mpsc::Receiver<Bytes>, permit: OwnedSemaphorePermit) -> Response<Body> {
    let mut response = Response::new(Body::Right(Stream {
        rx,
        _permit: permit,
    }));
    let h = response.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        "text/event-stream".parse().expect("static"),
    );
    h.insert(
        hyper::header::CACHE_CONTROL,
        "no-store".parse().expect("static"),
    );
    response
}

fn too_many() -> Response<Body> {
    plain(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("{MAX_STREAMS} pages already follow this listener: close one\n"),
    )
}

/// A compiled-in file, with a policy that lets it load nothing from elsewhere.
fn file(body: &'static str, kind: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::Left(Full::new(Bytes::from_static(body.as_bytes()))));
    let h = response.headers_mut();
    h.insert(hyper::header::CONTENT_TYPE, kind.parse().expect("static"));
    h.insert(
        hyper::header::CACHE_CONTROL,
        "no-store".parse().expect("static"),
    );
    h.insert(
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
            .parse()
            .expect("static"),
    );
    h.insert("x-content-type-options", "nosniff".parse().expect("static"));
    h.insert("referrer-policy", "no-referrer".parse().expect("static"));
    response
}

fn json_answer(status: StatusCode, json: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::Left(Full::new(Bytes::from(json.to_string()))));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        "application/json".parse().expect("static"),
    );
    h.insert(
        hyper::header::CACHE_CONTROL,
        "no-store".parse().expect("static"),
    );
    response
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(Body::Left(Full::new(Bytes::from(text.to_string()))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        "text/plain; charset=utf-8".parse().expect("static"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_parse_or_say_what_is_wrong() {
        let a = parse_action(br#"{"app":"api","verb":"scale","by":-1}"#).unwrap();
        assert_eq!(a.verb, Verb::Scale(-1));
        assert!(parse_action(br#"{"app":"api","verb":"scale"}"#)
            .unwrap_err()
            .contains("needs `by`"));
        assert!(parse_action(br#"{"app":"api","verb":"nuke"}"#)
            .unwrap_err()
            .contains("unknown verb `nuke`"));
        assert!(parse_action(b"{").unwrap_err().starts_with("not an action"));
    }

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(percent_decode("a%20b+c%2"), "a b c%2");
        assert_eq!(percent_decode("%e2%9c%93"), "✓");
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"ab", b"abc"));
    }
}
