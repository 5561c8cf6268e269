//! Accepting admin connections and answering `/livez` and `/readyz` with hyper, within the
//! limits of the module doc. A dashboard stream (`/events`, `/logs`) is the exception to
//! the time limit and to [`MAX_CONNECTIONS`]: once its answer starts it gives its
//! connection slot back and holds a stream slot instead (at most
//! [`dashboard::MAX_STREAMS`]), and it lasts as long as its page reads.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use super::dashboard::{self, Body, Site};
use super::{
    Access, Listener, Probe, Report, LOOP_ANSWER, MAX_CONNECTIONS, MAX_HEAD, METRICS_ANSWER,
    REQUEST_TIMEOUT,
};

/// Serves `listener` until the loop's end of `probes` is gone (the app ended); actions on
/// its dashboard as `access` allows.
pub async fn serve(listener: Listener, probes: mpsc::UnboundedSender<Probe>, access: Access) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let read_only = access.token.is_none().then(|| {
        "read-only: this admin listener takes no actions (herd run's has no token)".to_string()
    });
    let site = Arc::new(Site {
        hub: dashboard::Hub::new(probes.clone(), read_only),
        streams: Arc::new(Semaphore::new(dashboard::MAX_STREAMS)),
        token: access.token,
        loopback: match &listener {
            Listener::Tcp(l) => l.local_addr().is_ok_and(|a| a.ip().is_loopback()),
            Listener::Unix(_) => false,
        },
        probes: probes.clone(),
    });
    loop {
        let accepted = tokio::select! {
            conn = accept(&listener) => conn,
            _ = probes.closed() => return,
        };
        let Some(conn) = accepted else { continue };
        // Over the limit: the connection is closed unanswered, the others go on.
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let probes = probes.clone();
        let site = site.clone();
        tokio::spawn(async move {
            match conn {
                Conn::Tcp(s) => one_request(s, probes, site, permit).await,
                Conn::Unix(s) => one_request(s, probes, site, permit).await,
            }
        });
    }
}

enum Conn {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

/// The next connection; `None` after an error that the next accept may not repeat (the
/// fd limit, a client that left), after a short pause so an error that lasts does not spin.
async fn accept(listener: &Listener) -> Option<Conn> {
    let accepted = match listener {
        Listener::Tcp(l) => l.accept().await.map(|(s, _)| Conn::Tcp(s)),
        Listener::Unix(l) => l.accept().await.map(|(s, _)| Conn::Unix(s)),
    };
    match accepted {
        Ok(conn) => Some(conn),
        Err(e) => {
            tracing::debug!("admin listener: accept: {e}");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            None
        }
    }
}

async fn one_request<S>(
    stream: S,
    probes: mpsc::UnboundedSender<Probe>,
    site: Arc<Site>,
    permit: OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let streaming = Arc::new(AtomicBool::new(false));
    let permit = Arc::new(Mutex::new(Some(permit)));
    let flag = streaming.clone();
    let service = hyper::service::service_fn(move |req| {
        let (probes, site, flag, permit) =
            (probes.clone(), site.clone(), flag.clone(), permit.clone());
        async move {
            if dashboard::owns(req.uri().path()) {
                let started = move || {
                    flag.store(true, Ordering::SeqCst);
                    // The stream holds a stream slot (taken by the dashboard) instead.
                    drop(permit.lock().unwrap_or_else(|e| e.into_inner()).take());
                };
                return Ok::<_, Infallible>(dashboard::answer(&site, req, started).await);
            }
            answer(req, probes).await
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .max_buf_size(MAX_HEAD)
        .timer(TokioTimer::new())
        .header_read_timeout(REQUEST_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    // A client that reads its answer slowly, or never, is dropped too; a stream lasts
    // while its page reads (the hub drops a page that does not).
    tokio::select! {
        _ = &mut conn => {}
        _ = tokio::time::sleep(REQUEST_TIMEOUT) => {
            if streaming.load(Ordering::SeqCst) {
                let _ = conn.await;
            }
        }
    }
}

async fn answer(
    req: Request<Incoming>,
    probes: mpsc::UnboundedSender<Probe>,
) -> Result<Response<Body>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD\n".into(),
        ));
    }
    let verbose = req.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|kv| kv.split('=').next() == Some("verbose"))
    });
    let (status, body) = match req.uri().path() {
        "/livez" => livez(&probes, verbose).await,
        "/readyz" => readyz(&probes, verbose).await,
        "/metrics/app" => return Ok(app_metrics(&probes).await),
        "/status" => {
            let (reply, rx) = oneshot::channel();
            let sent = probes.send(Probe::Status(reply)).is_ok();
            return Ok(exposition(sent, rx, JSON, "herd's loop did not answer").await);
        }
        "/metrics" => {
            let openmetrics = req
                .headers()
                .get_all(hyper::header::ACCEPT)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| v.contains(OPENMETRICS)));
            return Ok(metrics(&probes, openmetrics).await);
        }
        path => (
            StatusCode::NOT_FOUND,
            format!("no {path} here: / (the dashboard), /livez, /readyz, /metrics, /metrics/app and /status\n"),
        ),
    };
    Ok(text(status, body))
}

/// `/status`'s media type.
const JSON: &str = "application/json";

/// Media types of the two expositions.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The media type of OpenMetrics text, as scrapers ask for it in `Accept`.
const OPENMETRICS: &str = "application/openmetrics-text";

/// The app's own metrics (the Prometheus text format).
async fn app_metrics(probes: &mpsc::UnboundedSender<Probe>) -> Response<Body> {
    let (reply, rx) = oneshot::channel();
    let sent = probes.send(Probe::AppMetrics(reply)).is_ok();
    exposition(sent, rx, PROMETHEUS_TEXT, "the app's metrics did not come").await
}

/// herd's own exposition, rendered off the loop from its snapshot.
async fn metrics(probes: &mpsc::UnboundedSender<Probe>, openmetrics: bool) -> Response<Body> {
    let (reply, rx) = oneshot::channel();
    let sent = probes.send(Probe::Metrics { openmetrics, reply }).is_ok();
    let kind = if openmetrics {
        OPENMETRICS_TEXT
    } else {
        PROMETHEUS_TEXT
    };
    exposition(sent, rx, kind, "herd's loop did not answer").await
}

/// The answer once the exposition comes (within [`METRICS_ANSWER`]), as `kind`; 503
/// saying `late` otherwise.
async fn exposition(
    sent: bool,
    rx: oneshot::Receiver<String>,
    kind: &'static str,
    late: &str,
) -> Response<Body> {
    let answered = match sent {
        true => tokio::time::timeout(METRICS_ANSWER, rx)
            .await
            .ok()
            .and_then(Result::ok),
        false => None,
    };
    let Some(body) = answered else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{late} within {} s\n", METRICS_ANSWER.as_secs()),
        );
    };
    let mut response = text(StatusCode::OK, body);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(kind),
    );
    response
}

/// The loop answers: it turns.
async fn livez(probes: &mpsc::UnboundedSender<Probe>, verbose: bool) -> (StatusCode, String) {
    let (tx, rx) = oneshot::channel();
    let answered = probes.send(Probe::Live(tx)).is_ok()
        && matches!(tokio::time::timeout(LOOP_ANSWER, rx).await, Ok(Ok(())));
    let line = if answered {
        "[+]loop ok".to_string()
    } else {
        format!(
            "[-]loop failed: herd's loop did not answer within {} ms",
            LOOP_ANSWER.as_millis()
        )
    };
    verdict("livez", answered, &[line], verbose)
}

/// Every check of the loop's report passes.
async fn readyz(probes: &mpsc::UnboundedSender<Probe>, verbose: bool) -> (StatusCode, String) {
    let (tx, rx) = oneshot::channel();
    let report = match probes.send(Probe::Ready(tx)) {
        Ok(()) => tokio::time::timeout(LOOP_ANSWER, rx)
            .await
            .ok()
            .and_then(Result::ok),
        Err(_) => None,
    };
    let Some(report) = report else {
        let line = format!(
            "[-]loop failed: herd's loop did not answer within {} ms",
            LOOP_ANSWER.as_millis()
        );
        return verdict("readyz", false, &[line], verbose);
    };
    let (status, mut body) = verdict("readyz", report.ready(), &lines(&report), verbose);
    if verbose {
        for w in &report.workers {
            body.push_str("  ");
            body.push_str(w);
            body.push('\n');
        }
    }
    (status, body)
}

fn lines(report: &Report) -> Vec<String> {
    report
        .checks
        .iter()
        .map(|c| {
            if c.ok {
                format!("[+]{} ok: {}", c.name, c.detail)
            } else {
                format!("[-]{} failed: {}", c.name, c.detail)
            }
        })
        .collect()
}

/// kube-apiserver's answer: `ok` when it passes; the failed checks and `… check failed`
/// when not; every check with `?verbose`.
fn verdict(what: &str, ok: bool, lines: &[String], verbose: bool) -> (StatusCode, String) {
    let mut body = String::new();
    for line in lines {
        if verbose || line.starts_with("[-]") {
            body.push_str(line);
            body.push('\n');
        }
    }
    if ok {
        if verbose {
            body.push_str(&format!("{what} check passed\n"));
        } else {
            body = "ok\n".into();
        }
        (StatusCode::OK, body)
    } else {
        body.push_str(&format!("{what} check failed\n"));
        (StatusCode::SERVICE_UNAVAILABLE, body)
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::Left(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::Check;

    fn report(ok: bool) -> Report {
        Report {
            checks: vec![
                Check {
                    name: "workers".into(),
                    ok,
                    detail: "1 of 2 ready, 2 needed".into(),
                },
                Check {
                    name: "shutdown".into(),
                    ok: true,
                    detail: "not shutting down".into(),
                },
            ],
            workers: Vec::new(),
        }
    }

    #[test]
    fn answers_as_kube_apiserver_does() {
        let passing = report(true);
        assert_eq!(
            verdict("readyz", true, &lines(&passing), false),
            (StatusCode::OK, "ok\n".into())
        );
        assert_eq!(
            verdict("readyz", true, &lines(&passing), true).1,
            "[+]workers ok: 1 of 2 ready, 2 needed\n[+]shutdown ok: not shutting down\nreadyz check passed\n"
        );
        let failing = report(false);
        let (status, body) = verdict("readyz", false, &lines(&failing), false);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            "[-]workers failed: 1 of 2 ready, 2 needed\nreadyz check failed\n"
        );
        assert!(verdict("readyz", false, &lines(&failing), true)
            .1
            .contains("[+]shutdown ok"));
    }
}
