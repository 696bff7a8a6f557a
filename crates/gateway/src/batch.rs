//! Batches: split by service, sent concurrently, answered in the client's order.
//!
//! Each call of a batch is read on its own. Calls the gateway can answer itself
//! (malformed, unknown service) get their answer at once; the others are grouped
//! by service, and each group goes upstream as a batch of the calls' original
//! bytes. A batch that goes whole to one service is forwarded as it came and its
//! answer relayed unchanged. Answers are matched back by position: a service
//! answers a batch in order, skipping notifications.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use protocol::envelope::{Rejected, parse_item};
use protocol::{ErrorCode, Flavor, RequestId, RpcError};
use serde_json::value::RawValue;
use tokio::time::Instant;
use tracing::warn;

use crate::forward::{self, Forwarded, GwBody};
use crate::metrics::{CallMetrics, Outcome};
use crate::routes::{Route, Routes};

/// What a batch call needs for its answer and its metrics.
struct Call<'a> {
    flavor: Flavor<'a>,
    /// The native `requestId`, if the call had one.
    request_id: Option<RequestId>,
    metrics: Arc<CallMetrics>,
}

/// The calls of a batch bound for one service.
struct Group {
    route: Arc<Route>,
    service: String,
    /// Positions of the calls in the client's batch.
    items: Vec<usize>,
    body: Vec<u8>,
}

/// What came back for a group.
enum Reply {
    /// The answers of the group's calls, notifications left out.
    Answers(Bytes),
    /// The call failed as a whole; each call is answered with this error.
    Failed(RpcError, Outcome),
}

/// The parts of a batch, before anything is sent.
struct Plan<'a> {
    calls: Vec<Option<Call<'a>>>,
    answers: Vec<Option<Vec<u8>>>,
    groups: Vec<Group>,
}

/// Everything a batch needs from the request around it.
pub(crate) struct Context<'r> {
    pub(crate) routes: &'r Routes,
    pub(crate) forwarded: &'r Forwarded,
    pub(crate) request_id: &'r RequestId,
    /// Longest wait for an instance's answer body, once its headers arrived.
    pub(crate) body_timeout: Duration,
}

/// Answers a batch whose calls are `raws`, parsed out of `body`.
pub(crate) async fn handle(
    ctx: &Context<'_>,
    body: &Bytes,
    raws: &[&RawValue],
) -> Response<GwBody> {
    let started = Instant::now();
    let mut plan = plan(ctx.routes, raws);
    if plan.groups.len() == 1 && plan.groups[0].items.len() == raws.len() {
        return whole(ctx, body.clone(), &plan, started).await;
    }

    let replies = send_all(ctx, &mut plan.groups).await;
    let seconds = started.elapsed().as_secs_f64();
    for (group, reply) in plan.groups.iter().zip(replies) {
        distribute(group, reply, &plan.calls, &mut plan.answers, seconds);
    }
    assemble(&plan.answers, ctx.request_id, ctx.forwarded)
}

/// Reads each call; answers the ones the gateway can, groups the others.
fn plan<'a>(routes: &Routes, raws: &[&'a RawValue]) -> Plan<'a> {
    let mut plan = Plan {
        calls: Vec::with_capacity(raws.len()),
        answers: vec![None; raws.len()],
        groups: Vec::new(),
    };
    for (index, raw) in raws.iter().enumerate() {
        let call = match parse_item(raw) {
            Ok(env) => route_call(routes, &mut plan, index, raw, env),
            Err(rejected) => {
                plan.answers[index] = rejected_answer(routes, rejected);
                None
            }
        };
        plan.calls.push(call);
    }
    plan
}

/// Adds one readable call to its service's group, or answers `method_not_found`.
fn route_call<'a>(
    routes: &Routes,
    plan: &mut Plan<'a>,
    index: usize,
    raw: &RawValue,
    env: protocol::Envelope<'a>,
) -> Option<Call<'a>> {
    let Some(route) = routes.get(env.service()) else {
        routes.unknown().record(Outcome::method_not_found, 0.0);
        let error = RpcError::method_not_found(&env.method);
        let id = env.request_id.unwrap_or_else(RequestId::generate);
        plan.answers[index] = encode(env.flavor, &id, &error);
        return None;
    };

    let metrics = route.methods.get(&env.method);
    let group = group_of(&mut plan.groups, route, env.service());
    if !group.items.is_empty() {
        group.body.push(b',');
    }
    group.body.extend_from_slice(raw.get().as_bytes());
    group.items.push(index);
    Some(Call {
        flavor: env.flavor,
        request_id: env.request_id,
        metrics,
    })
}

fn group_of<'g>(groups: &'g mut Vec<Group>, route: Arc<Route>, service: &str) -> &'g mut Group {
    let position = groups.iter().position(|g| Arc::ptr_eq(&g.route, &route));
    let index = position.unwrap_or_else(|| {
        groups.push(Group {
            route,
            service: service.to_owned(),
            items: Vec::new(),
            body: vec![b'['],
        });
        groups.len() - 1
    });
    &mut groups[index]
}

fn rejected_answer(routes: &Routes, rejected: Rejected<'_>) -> Option<Vec<u8>> {
    routes.unknown().record(Outcome::invalid, 0.0);
    let id = rejected.request_id.unwrap_or_else(RequestId::generate);
    encode(rejected.flavor, &id, &rejected.error)
}

fn encode(flavor: Flavor<'_>, request_id: &RequestId, error: &RpcError) -> Option<Vec<u8>> {
    protocol::encode_single(flavor, request_id, Err(error))
}

/// A batch bound whole for one service: forwarded as it came, relayed as it comes.
async fn whole(
    ctx: &Context<'_>,
    body: Bytes,
    plan: &Plan<'_>,
    started: Instant,
) -> Response<GwBody> {
    let group = &plan.groups[0];
    let req = ctx.forwarded.request(body, ctx.request_id);
    let result = group.route.pool.send(req).await;
    let seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(resp) => {
            let outcome = Outcome::of_status(resp.status());
            plan.calls
                .iter()
                .flatten()
                .for_each(|c| c.metrics.record(outcome, seconds));
            ctx.forwarded.relay(resp, ctx.request_id)
        }
        Err(e) => {
            let reply = failed(&e, &group.service, ctx.request_id);
            let mut answers = plan.answers.clone();
            distribute(group, reply, &plan.calls, &mut answers, seconds);
            assemble(&answers, ctx.request_id, ctx.forwarded)
        }
    }
}

/// Sends every group at once and waits for all of them, in group order.
async fn send_all(ctx: &Context<'_>, groups: &mut [Group]) -> Vec<Reply> {
    let tasks: Vec<_> = groups
        .iter_mut()
        .map(|group| {
            group.body.push(b']');
            let body = Bytes::from(std::mem::take(&mut group.body));
            let req = ctx.forwarded.request(body, ctx.request_id);
            let (route, service) = (group.route.clone(), group.service.clone());
            let (id, timeout) = (ctx.request_id.clone(), ctx.body_timeout);
            tokio::spawn(async move { send_group(&route, &service, req, &id, timeout).await })
        })
        .collect();

    let mut replies = Vec::with_capacity(tasks.len());
    for task in tasks {
        let reply = task.await.unwrap_or_else(|e| {
            warn!(request_id = %ctx.request_id, error = %e, "batch part panicked");
            Reply::Failed(RpcError::internal(), Outcome::failed)
        });
        replies.push(reply);
    }
    replies
}

/// One group's exchange, its answer body read whole.
async fn send_group(
    route: &Route,
    service: &str,
    req: http::Request<Bytes>,
    request_id: &RequestId,
    body_timeout: Duration,
) -> Reply {
    let resp = match route.pool.send(req).await {
        Ok(resp) => resp,
        Err(e) => return failed(&e, service, request_id),
    };
    let status = resp.status();
    let body = tokio::time::timeout(body_timeout, resp.into_body().collect()).await;
    match body {
        Ok(Ok(_)) if status == StatusCode::NO_CONTENT => Reply::Answers(Bytes::new()),
        Ok(Ok(body)) if status == StatusCode::OK => Reply::Answers(body.to_bytes()),
        Ok(Ok(_)) => Reply::Failed(status_error(status, service), Outcome::of_status(status)),
        Ok(Err(e)) => {
            warn!(%request_id, service, error = %e, "cannot read batch answer");
            Reply::Failed(unreadable(service), Outcome::failed)
        }
        Err(_) => Reply::Failed(
            RpcError::new(
                ErrorCode::Timeout,
                format!("{service} did not answer in time"),
            ),
            Outcome::timeout,
        ),
    }
}

fn failed(e: &upstream::UpstreamError, service: &str, request_id: &RequestId) -> Reply {
    let (error, outcome) = forward::upstream_failure(e, service);
    if outcome == Outcome::failed {
        warn!(%request_id, service, error = %e, "batch part failed");
    }
    Reply::Failed(error, outcome)
}

/// The error of every call of a group whose batch was refused as a whole.
fn status_error(status: StatusCode, service: &str) -> RpcError {
    let code = match status.as_u16() {
        413 => ErrorCode::PayloadTooLarge,
        503 => ErrorCode::Unavailable,
        504 => ErrorCode::Timeout,
        _ => ErrorCode::Internal,
    };
    RpcError::new(code, format!("{service} refused the batch ({status})"))
}

fn unreadable(service: &str) -> RpcError {
    RpcError::new(
        ErrorCode::Internal,
        format!("{service} gave an unreadable answer"),
    )
}

/// Puts a group's reply into the answers of its calls.
fn distribute(
    group: &Group,
    reply: Reply,
    calls: &[Option<Call<'_>>],
    answers: &mut [Option<Vec<u8>>],
    seconds: f64,
) {
    let reply = match reply {
        Reply::Answers(bytes) => match place(group, &bytes, calls, answers) {
            true => return record(group, calls, Outcome::ok, seconds),
            false => Reply::Failed(unreadable(&group.service), Outcome::failed),
        },
        failed => failed,
    };
    if let Reply::Failed(error, outcome) = reply {
        for &index in &group.items {
            let Some(call) = &calls[index] else { continue };
            let id = call.request_id.clone().unwrap_or_else(RequestId::generate);
            answers[index] = encode(call.flavor, &id, &error);
        }
        record(group, calls, outcome, seconds);
    }
}

/// Matches answers to the group's calls that expect one; false on a count mismatch.
fn place(
    group: &Group,
    bytes: &[u8],
    calls: &[Option<Call<'_>>],
    answers: &mut [Option<Vec<u8>>],
) -> bool {
    let parsed: Vec<&RawValue> = match bytes.is_empty() {
        true => Vec::new(),
        false => match serde_json::from_slice(bytes) {
            Ok(list) => list,
            Err(_) => return false,
        },
    };
    let expecting: Vec<usize> = group
        .items
        .iter()
        .copied()
        .filter(|&i| {
            calls[i]
                .as_ref()
                .is_some_and(|c| !c.flavor.is_notification())
        })
        .collect();
    if parsed.len() != expecting.len() {
        return false;
    }
    for (index, raw) in expecting.into_iter().zip(parsed) {
        answers[index] = Some(raw.get().as_bytes().to_vec());
    }
    true
}

fn record(group: &Group, calls: &[Option<Call<'_>>], outcome: Outcome, seconds: f64) {
    for &index in &group.items {
        if let Some(call) = &calls[index] {
            call.metrics.record(outcome, seconds);
        }
    }
}

/// The batch answer: every answer in order, or 204 when there is none.
fn assemble(
    answers: &[Option<Vec<u8>>],
    request_id: &RequestId,
    forwarded: &Forwarded,
) -> Response<GwBody> {
    let body = protocol::encode_batch(answers.iter().map(Option::as_deref));
    let mut response = match body {
        Some(body) => service::http::json_response(StatusCode::OK, request_id, body),
        None => service::http::empty_response(StatusCode::NO_CONTENT, request_id),
    };
    forwarded.echo_trace(response.headers_mut());
    forward::local(response)
}
