//! The `--listen-cli` socket relayctl talks to: TCP, one JSON request line
//! in, one JSON reply line out.
//!
//! Requests: `{"command":"calls"}` (every call's summary),
//! `{"command":"show","call_id":"..."}`, `{"command":"totals"}` and
//! `{"command":"stop"}` (end every call and stop relayd for good),
//! `{"command":"takeover"}` (a standby becomes the active, docs/ha.md). Replies: `{"ok":true,"data":...}` or
//! `{"ok":false,"error":"...","code":"..."}` where `code` is `not_found` for
//! an unknown call and `bad_request` otherwise.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::{TcpListener, TcpStream},
    sync::{mpsc, oneshot, Notify},
};

use crate::{calls::CallManager, ha::switch::Request as SwitchRequest, stats::NgStats};

/// rtpengine's CLI port.
pub const DEFAULT_LISTEN_CLI: &str = "127.0.0.1:9900";

/// Longest request line accepted.
const MAX_REQUEST: u64 = 64 * 1024;

/// Serves CLI connections until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    calls: Arc<Mutex<CallManager>>,
    ng: Arc<NgStats>,
    stop: Arc<Notify>,
    switch: mpsc::UnboundedSender<SwitchRequest>,
) {
    super::tcp::serve(listener, "CLI", super::tcp::SHORT_LIVED, |stream, _| {
        connection(
            stream,
            calls.clone(),
            ng.clone(),
            stop.clone(),
            switch.clone(),
        )
    })
    .await;
}

async fn connection(
    stream: TcpStream,
    calls: Arc<Mutex<CallManager>>,
    ng: Arc<NgStats>,
    stop: Arc<Notify>,
    switch: mpsc::UnboundedSender<SwitchRequest>,
) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_REQUEST));
    if reader.read_line(&mut line).await.is_err() {
        return;
    }
    let reply = match is_takeover(&line) {
        true => take_over(&switch).await,
        false => answer(&line, &calls, &ng, &stop),
    };
    let mut bytes = reply.to_string().into_bytes();
    bytes.push(b'\n');
    let _ = write.write_all(&bytes).await;
}

fn is_takeover(line: &str) -> bool {
    serde_json::from_str::<Value>(line)
        .is_ok_and(|r| r.get("command").and_then(Value::as_str) == Some("takeover"))
}

/// `takeover`: asks the role switch, and waits for it (it takes as long
/// as restoring the calls does).
async fn take_over(switch: &mpsc::UnboundedSender<SwitchRequest>) -> Value {
    let (tx, rx) = oneshot::channel();
    if switch.send(SwitchRequest::Takeover(tx)).is_err() {
        return error("bad_request", "relayd is stopping");
    }
    match rx.await {
        Ok(Ok(report)) => json!({"ok": true, "data": report}),
        Ok(Err(e)) => error("refused", &e.to_string()),
        Err(_) => error("bad_request", "relayd is stopping"),
    }
}

fn error(code: &str, message: &str) -> Value {
    json!({"ok": false, "code": code, "error": message})
}

/// The reply to one request line.
pub fn answer(line: &str, calls: &Mutex<CallManager>, ng: &NgStats, stop: &Notify) -> Value {
    let Ok(request) = serde_json::from_str::<Value>(line) else {
        return error("bad_request", "request is not a JSON object");
    };
    let calls = crate::lock(calls);
    match request.get("command").and_then(Value::as_str) {
        Some("calls") => {
            let summaries: Vec<_> = calls
                .list(usize::MAX)
                .iter()
                .filter_map(|id| calls.query(id).ok())
                .collect();
            json!({"ok": true, "data": summaries})
        }
        Some("totals") => json!({"ok": true, "data": crate::stats::totals(&calls, ng)}),
        Some("show") => {
            let Some(id) = request.get("call_id").and_then(Value::as_str) else {
                return error("bad_request", "show needs call_id");
            };
            match calls.query(id) {
                Ok(summary) => json!({"ok": true, "data": summary}),
                Err(e) => error("not_found", &e.to_string()),
            }
        }
        Some("stop") => {
            // notify_one keeps the permit if relayd is not waiting yet.
            stop.notify_one();
            json!({"ok": true, "data": {"calls": calls.len()}})
        }
        Some(other) => error("bad_request", &format!("unknown command {other:?}")),
        None => error("bad_request", "missing \"command\""),
    }
}
