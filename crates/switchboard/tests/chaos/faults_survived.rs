//! Faults survived: an instance or a gateway killed, stopped, failing, cut off,
//! reconfigured or restarted under load, and what the client saw meanwhile.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::block_in_place;
use tokio::time::sleep;

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use crate::fault::{BadInstance, Counts, Mode, Partition, nft_unavailable};
use crate::load::{Client, Ledger, Load, Outcome, report, steady};
use crate::observe::{self, in_everywhere, ms, out_everywhere, sum_over, within};
use crate::stack::{Node, Settings, Stack, standalone_calc};
use crate::{rate, scenario};

/// Longest a client waits for any answer before calling it a hang.
pub(crate) const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

const UPSTREAM_REQUESTS: &str = "switchboard_upstream_requests_total";
const RETRIES: &str = "switchboard_upstream_retries_total";

fn secs(n: f64) -> Duration {
    Duration::from_secs_f64(n)
}

/// Where each gateway shows its pools and metrics.
fn gateways(stack: &Stack) -> Vec<SocketAddr> {
    stack.gateways.iter().map(|g| g.admin).collect()
}

fn load(stack: &Stack, tag: &str, seconds: f64) -> Load {
    let client = Client::new(stack.lb.addr, tag, CLIENT_TIMEOUT);
    Load::start(client, steady(rate(), secs(seconds)))
}

/// Tries the gateways sent to calc, summed, by outcome (all when `None`).
async fn calc_tries(gws: &[SocketAddr], outcome: Option<&str>) -> f64 {
    let mut labels = vec![("pool", "calc")];
    labels.extend(outcome.map(|o| ("outcome", o)));
    sum_over(gws, UPSTREAM_REQUESTS, &labels).await
}

#[test]
fn kill_9_one_calc_ejects_it_within_2s_and_readmits_it_within_3s_of_restart() {
    scenario(async {
        let mut stack = Stack::start(Settings::default());
        let gws = gateways(&stack);
        let load = load(&stack, "kill9-calc", 8.0);
        sleep(secs(1.5)).await;

        let victim = stack.calc[0].addr;
        stack.calc[0].kill9();
        let ejected = within(secs(5.0), || out_everywhere(&gws, "calc", victim))
            .await
            .expect("killed calc ejected");
        sleep(secs(1.0)).await;

        block_in_place(|| stack.calc[0].restart());
        let back = within(secs(6.0), || in_everywhere(&gws, "calc", victim))
            .await
            .expect("restarted calc back in rotation");
        let ledger = load.finish().await;
        let served = observe::sum(
            &observe::metrics(victim).await,
            "switchboard_rpc_requests_total",
            &[],
        );

        let figures = format!(
            "ejected after {} ms, back {} ms after restart, restarted instance served {served}",
            ms(ejected),
            ms(back)
        );
        report("kill -9 one of 3 calc, restart", &ledger, &figures);
        ledger.assert_all_ok("kill -9 calc");
        assert!(ejected <= secs(2.0), "{figures}");
        assert!(back <= secs(3.0), "{figures}");
        assert!(served > 0.0, "the restarted instance takes calls again");
    });
}

#[test]
fn sigstop_one_calc_times_out_retries_elsewhere_and_ejects_it() {
    scenario(async {
        let stack = Stack::start(Settings::default());
        let gws = gateways(&stack);
        let load = load(&stack, "sigstop", 8.0);
        sleep(secs(1.0)).await;

        let victim = stack.calc[0].addr;
        stack.calc[0].signal("STOP");
        let ejected = within(secs(4.0), || out_everywhere(&gws, "calc", victim))
            .await
            .expect("stopped calc ejected");
        sleep(secs(4.0).saturating_sub(ejected)).await;
        stack.calc[0].signal("CONT");
        let back = within(secs(6.0), || in_everywhere(&gws, "calc", victim))
            .await
            .expect("continued calc back in rotation");
        let ledger = load.finish().await;
        let timeouts = sum_over(&gws, RETRIES, &[("pool", "calc"), ("reason", "timeout")]).await;

        let figures = format!(
            "stopped 4 s; ejected after {} ms, {timeouts} retries after a timeout, back {} ms after CONT",
            ms(ejected),
            ms(back)
        );
        report("SIGSTOP one calc for 4 s", &ledger, &figures);
        ledger.assert_all_ok("sigstop");
        assert!(
            timeouts >= 1.0,
            "tries timed out and were retried: {figures}"
        );
        assert!(ejected <= secs(2.0), "{figures}");
    });
}

#[test]
fn a_calc_answering_500_is_ejected_and_no_call_fails() {
    scenario(async {
        let bad = BadInstance::start(Mode::Always500).await;
        let settings = Settings {
            calc: 2,
            extra_calc: vec![bad.addr],
            ..Settings::default()
        };
        let stack = Stack::start(settings);
        let gws = gateways(&stack);
        let load = load(&stack, "always500", 6.0);
        let ejected = within(secs(4.0), || out_everywhere(&gws, "calc", bad.addr))
            .await
            .expect("bad instance ejected");
        let ledger = load.finish().await;
        let ejections = sum_over(
            &gws,
            "switchboard_upstream_ejections_total",
            &[("endpoint", &bad.addr.to_string())],
        )
        .await;

        let tries = bad.rpc();
        let figures = format!(
            "ejected after {} ms; {tries} of {} calls tried it, {ejections} ejections",
            ms(ejected),
            ledger.sent()
        );
        report("one calc answering 500 always", &ledger, &figures);
        ledger.assert_all_ok("always 500");
        assert!(ejections >= 2.0, "each gateway ejects it: {figures}");
        // Re-admitted on a passing probe, then ejected again after 3 more
        // failures, with a doubling backoff: a few per gateway.
        assert!(tries <= 60, "{figures}");
    });
}

#[test]
fn all_calc_down_answers_503_unavailable_fast_without_a_connect_storm_and_recovers() {
    scenario(async {
        let mut stack = Stack::start(Settings::default());
        let gws = gateways(&stack);
        let lb = [stack.lb.admin];
        let load = load(&stack, "alldown", 8.0);
        sleep(secs(1.0)).await;

        let tries_before = calc_tries(&gws, None).await;
        let lb_before = sum_over(&lb, UPSTREAM_REQUESTS, &[("pool", "rpc")]).await;
        let killed_at = load.elapsed();
        for calc in &mut stack.calc {
            calc.kill9();
        }
        sleep(secs(3.0)).await;
        let tries = calc_tries(&gws, None).await - tries_before;
        let lb_tries = sum_over(&lb, UPSTREAM_REQUESTS, &[("pool", "rpc")]).await - lb_before;
        let down_until = load.elapsed();
        block_in_place(|| stack.calc.iter_mut().for_each(Node::restart));
        let restored_at = load.elapsed();
        let ledger = load.finish().await;

        let window = |from: Duration, to: Duration| Ledger {
            entries: (ledger.entries.iter())
                .filter(|e| e.due >= from && e.due < to)
                .cloned()
                .collect(),
        };
        // Calls already on their way at the kill may still be answered.
        let down = window(killed_at + secs(0.05), down_until);
        let after = window(restored_at, secs(100.0));
        let last_failure = after.failures().last().map(|e| e.due);
        let recovery = last_failure.map_or(Duration::ZERO, |d| d.saturating_sub(restored_at));
        let client = down.sent() as f64;
        let figures = format!(
            "down 3 s: {} calls, p50 {} ms, p90 {} ms, max {} ms; tries to calc {tries} \
             ({:.2} per call), lb tries {lb_tries} ({:.2} per call); \
             all ok again {} ms after calc restarted",
            down.sent(),
            ms(down.percentile(50.0)),
            ms(down.percentile(90.0)),
            ms(down.percentile(100.0)),
            tries / client,
            lb_tries / client,
            ms(recovery),
        );
        report("all calc down, then back", &ledger, &figures);
        for e in &down.entries {
            let unavailable = matches!(&e.outcome,
                Outcome::Status { status: 503, code, .. } if code == "unavailable");
            assert!(unavailable, "{e:?}");
        }
        // 50 ms is the promise; the tail allows for a shared, busy machine.
        assert!(down.percentile(90.0) <= secs(0.05), "{figures}");
        assert!(down.percentile(100.0) <= secs(1.0), "no hang: {figures}");
        assert!(tries <= 1.2 * client, "{figures}");
        assert!(lb_tries <= 1.2 * client, "{figures}");
        assert!(recovery <= secs(1.0), "{figures}");
    });
}

#[test]
fn half_the_answers_failing_keeps_attempts_within_the_retry_budget() {
    scenario(async {
        let calc: Vec<_> = (0..3)
            .map(|i| standalone_calc(&format!("calc{i}")))
            .collect();
        let mut flaky = Vec::new();
        for node in &calc {
            let mode = Mode::Flaky {
                share: 0.5,
                backend: node.addr,
            };
            flaky.push(BadInstance::start(mode).await);
        }
        let settings = Settings {
            calc: 0,
            extra_calc: flaky.iter().map(|f| f.addr).collect(),
            // Keep every instance in the pool: this is about retries alone.
            calc_health: "consecutive_failures = 100000",
            rpc_health: "consecutive_failures = 100000",
            ..Settings::default()
        };
        let stack = Stack::start(settings);
        let gws = gateways(&stack);
        let lb = [stack.lb.admin];
        let seconds = 8.0;
        let ledger = load(&stack, "flaky", seconds).finish().await;

        let gw_calls = sum_over(&gws, "switchboard_gateway_requests_total", &[]).await;
        let gw_tries = calc_tries(&gws, None).await;
        let lb_tries = sum_over(&lb, UPSTREAM_REQUESTS, &[("pool", "rpc")]).await;
        let exhausted = sum_over(
            &gws,
            "switchboard_upstream_retry_budget_exhausted_total",
            &[],
        )
        .await;
        let client = ledger.sent() as f64;
        // Per pool: 20 % of its requests plus 5 a second over a 10 s window.
        let floor = 5.0 * seconds.max(10.0);
        let gw_allowed = gw_calls + 0.2 * gw_calls + floor * gws.len() as f64;
        let lb_allowed = client + 0.2 * client + floor;
        let figures = format!(
            "gateway tries per call {:.2} (budget {:.2}), lb tries per call {:.2} (budget {:.2}), \
             {exhausted} retries refused",
            gw_tries / gw_calls,
            gw_allowed / gw_calls,
            lb_tries / client,
            lb_allowed / client,
        );
        report("half the answers failing (3 of 3)", &ledger, &figures);
        assert!(gw_tries <= gw_allowed, "{figures}");
        assert!(lb_tries <= lb_allowed, "{figures}");
        assert!(exhausted > 0.0, "the budget was needed: {figures}");
    });
}

#[test]
fn kill_9_one_gateway_fails_no_call() {
    scenario(async {
        let mut stack = Stack::start(Settings::default());
        let lb = [stack.lb.admin];
        let load = load(&stack, "kill9-gw", 6.0);
        sleep(secs(1.5)).await;

        let victim = stack.gateways[0].addr;
        stack.gateways[0].kill9();
        let ejected = within(secs(4.0), || out_everywhere(&lb, "rpc", victim))
            .await
            .expect("killed gateway ejected");
        let ledger = load.finish().await;
        let closed = sum_over(&lb, RETRIES, &[("pool", "rpc")]).await;

        let figures = format!(
            "ejected by the lb after {} ms, {closed} lb retries",
            ms(ejected)
        );
        report("kill -9 one of 2 gateways", &ledger, &figures);
        ledger.assert_all_ok("kill -9 gateway");
    });
}

#[test]
fn sigterm_a_gateway_then_the_lb_drains_without_failures_and_exits_0() {
    scenario(async {
        let mut stack = Stack::start(Settings::default());
        let load = load(&stack, "sigterm", 8.0);
        sleep(secs(1.5)).await;

        stack.gateways[0].signal("TERM");
        let gw_exit = block_in_place(|| stack.gateways[0].wait_exit(secs(6.0)));
        let gw_exit = gw_exit.expect("gateway exits within its drain timeout");
        sleep(secs(1.5)).await;

        let lb_term_at = load.elapsed();
        let started = std::time::Instant::now();
        stack.lb.signal("TERM");
        let lb_exit = block_in_place(|| stack.lb.wait_exit(secs(6.0)));
        let lb_exit = lb_exit.expect("lb exits within its drain timeout");
        let lb_took = started.elapsed();
        load.stop();
        let ledger = load.finish().await;

        let refused_after_term = ledger
            .entries
            .iter()
            .filter(|e| e.outcome == Outcome::NotSent && e.due >= lb_term_at)
            .count();
        let failed: Vec<_> = ledger
            .failures()
            .into_iter()
            .filter(|e| !(e.outcome == Outcome::NotSent && e.due >= lb_term_at))
            .collect();
        let figures = format!(
            "gateway exit {gw_exit}, lb exit {lb_exit} after {} ms; \
             {refused_after_term} calls refused at connect after the lb's SIGTERM",
            ms(lb_took)
        );
        report("SIGTERM a gateway, then the lb", &ledger, &figures);
        assert!(failed.is_empty(), "{figures}: {failed:#?}");
        assert!(gw_exit.success() && lb_exit.success(), "{figures}");
    });
}

#[test]
fn config_reload_adds_and_removes_instances_and_refuses_a_broken_file() {
    scenario(async {
        let mut stack = Stack::start(Settings::default());
        let gws = gateways(&stack);
        let spare = block_in_place(|| stack.spare_calc("calc3"));
        let load = load(&stack, "reload", 10.0);
        sleep(secs(1.0)).await;

        let mut all: Vec<SocketAddr> = stack.calc.iter().map(|c| c.addr).collect();
        all.push(spare.addr);
        stack.set_calc_endpoints(&all);
        let added = within(secs(4.0), || in_everywhere(&gws, "calc", spare.addr))
            .await
            .expect("added instance in rotation");
        sleep(secs(1.0)).await;

        let removed = stack.calc[0].addr;
        stack.set_calc_endpoints(&all[1..]);
        for gw in &stack.gateways {
            gw.signal("HUP");
        }
        let gone = within(secs(4.0), || async {
            let mut gone = true;
            for gw in &gws {
                gone &= observe::endpoint(*gw, "calc", removed).await.is_none();
            }
            gone
        })
        .await
        .expect("removed instance left");
        sleep(secs(0.5)).await;
        stack.calc[0].kill9();

        let refused_before = refusals(&gws).await;
        stack.write_config("[gateway.services.calc]\nendpoints = 42\n[lb\n");
        for gw in &stack.gateways {
            gw.signal("HUP");
        }
        let lb_reload = observe_reload(stack.lb.admin).await;
        let refused = within(secs(4.0), || async {
            refusals(&gws).await > refused_before
        })
        .await
        .expect("broken config refused");
        let ledger = load.finish().await;
        let spare_served = observe::sum(
            &observe::metrics(spare.addr).await,
            "switchboard_rpc_requests_total",
            &[],
        );
        drop(spare);

        let figures = format!(
            "added in {} ms, removed in {} ms, broken file refused in {} ms \
             (lb POST /reload: {lb_reload}); new instance served {spare_served}",
            ms(added),
            ms(gone),
            ms(refused)
        );
        report("config reload: add, remove, broken", &ledger, &figures);
        ledger.assert_all_ok("reload");
        assert!(spare_served > 0.0, "{figures}");
        assert!(lb_reload >= 400, "{figures}");
        let _ = stack.dir();
    });
}

/// Refused reloads, summed over the gateways.
async fn refusals(gws: &[SocketAddr]) -> f64 {
    let name = "switchboard_gateway_config_reloads_total";
    sum_over(gws, name, &[("result", "error")]).await
}

/// Status of `POST /reload` on the lb's admin port.
async fn observe_reload(admin: SocketAddr) -> u16 {
    let resp = reqwest::Client::new()
        .post(format!("http://{admin}/reload"))
        .send()
        .await
        .expect("reload answer");
    resp.status().as_u16()
}

#[test]
fn a_partition_from_one_calc_ejects_it_and_healing_readmits_it() {
    if let Some(why) = nft_unavailable() {
        let required = std::env::var("SWITCHBOARD_REQUIRE_NETNS").is_ok_and(|v| v == "1");
        assert!(!required, "partition scenario cannot run: {why}");
        eprintln!("SKIPPED (not a pass): partition scenario needs nftables as root: {why}");
        return;
    }
    scenario(async {
        let stack = Stack::start(Settings::default());
        let gws = gateways(&stack);
        let load = load(&stack, "partition", 10.0);
        sleep(secs(1.0)).await;

        let victim = stack.calc[0].addr;
        let cut = Partition::new(victim.port());
        cut.drop_silently();
        let dropped = within(secs(4.0), || out_everywhere(&gws, "calc", victim))
            .await
            .expect("silently cut instance ejected");
        sleep(secs(2.0)).await;
        cut.reject();
        sleep(secs(2.0)).await;
        let still_out = out_everywhere(&gws, "calc", victim).await;
        cut.heal();
        let back = within(secs(6.0), || in_everywhere(&gws, "calc", victim))
            .await
            .expect("healed instance readmitted");
        let ledger = load.finish().await;
        drop(cut);

        let figures = format!(
            "silent drop ejected after {} ms, reject kept it out: {still_out}, \
             readmitted {} ms after heal",
            ms(dropped),
            ms(back)
        );
        report("partition gateway to one calc", &ledger, &figures);
        ledger.assert_all_ok("partition");
        assert!(still_out, "{figures}");
        assert!(dropped <= secs(2.0), "{figures}");
        assert!(back <= secs(3.0), "{figures}");
    });
}

#[test]
fn pooled_connections_closed_while_idle_are_retried_without_failures() {
    scenario(async {
        let calc: Vec<_> = (0..3)
            .map(|i| standalone_calc(&format!("calc{i}")))
            .collect();
        let mut closers = Vec::new();
        for node in &calc {
            let mode = Mode::IdleClose {
                backend: node.addr,
                max_idle: Duration::from_millis(40),
            };
            closers.push(BadInstance::start(mode).await);
        }
        let settings = Settings {
            calc: 0,
            extra_calc: closers.iter().map(|c| c.addr).collect(),
            // Not idempotent: only requests that never left may be retried.
            calc_pool: "idempotent = false",
            rpc_pool: "idempotent = false",
            ..Settings::default()
        };
        let stack = Stack::start(settings);
        let gws = gateways(&stack);
        let ledger = load(&stack, "idle-close", 8.0).finish().await;
        let retried = sum_over(&gws, RETRIES, &[("pool", "calc")]).await;
        let count = |f: fn(&Counts) -> &AtomicU64| -> u64 {
            closers.iter().map(|c| f(&c.counts).load(Relaxed)).sum()
        };
        let (closes, raced) = (count(|c| &c.idle_closes), count(|c| &c.raced));

        let figures = format!(
            "{closes} idle connections closed, {raced} closed under an arriving request; \
             {retried} retries"
        );
        report("pooled connections closed while idle", &ledger, &figures);
        ledger.assert_all_ok("idle close");
        // Probes meet raced connections too, and are not retried.
        assert!(closes > 50 && raced > 5, "the fault happened: {figures}");
        assert!(retried > 0.0, "{figures}");
    });
}

#[test]
fn a_rolling_restart_of_every_calc_fails_no_call() {
    scenario(async {
        let mut stack = Stack::start(Settings::default());
        let gws = gateways(&stack);
        let load = load(&stack, "rolling", 60.0);
        sleep(secs(1.0)).await;

        let mut steps = Vec::new();
        for i in 0..stack.calc.len() {
            let addr = stack.calc[i].addr;
            stack.calc[i].signal("TERM");
            let exit = block_in_place(|| stack.calc[i].wait_exit(secs(6.0)));
            assert!(
                exit.is_some_and(|s| s.success()),
                "calc{i} drains and exits 0"
            );
            block_in_place(|| stack.calc[i].restart());
            let back = within(secs(6.0), || in_everywhere(&gws, "calc", addr))
                .await
                .expect("restarted instance readmitted");
            steps.push(ms(back));
            sleep(secs(0.5)).await;
        }
        load.stop();
        let ledger = load.finish().await;

        let figures = format!("readmitted after restart in {steps:?} ms");
        report("rolling restart of 3 calc", &ledger, &figures);
        ledger.assert_all_ok("rolling restart");
    });
}
