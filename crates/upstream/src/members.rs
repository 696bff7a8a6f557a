//! Pool membership: which addresses are endpoints, and which take requests.
//!
//! Membership comes from the static addresses of the configuration and the last good
//! resolution of each host name. Changes are rare (updates, DNS, health flips), so
//! they are serialised by one mutex that the request path never takes; each change
//! ends by publishing a fresh [`Candidates`] snapshot.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, MutexGuard, PoisonError};

use tracing::info;

use crate::balance::Candidates;
use crate::config::Target;
use crate::endpoint::Endpoint;
use crate::pool::Inner;

/// The endpoints of a pool and the resolutions they came from.
#[derive(Debug, Default)]
pub(crate) struct Members {
    endpoints: HashMap<SocketAddr, Arc<Endpoint>>,
    /// Last good addresses of each host name still configured.
    resolved: HashMap<String, Vec<SocketAddr>>,
    next_id: u64,
}

impl Inner {
    fn members(&self) -> MutexGuard<'_, Members> {
        // A panic elsewhere cannot leave the map half-written in a way that matters.
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Brings the endpoints in line with the configuration and resolutions.
    pub(crate) fn apply_membership(&self) {
        let mut members = self.members();
        let desired = self.desired(&mut members);
        self.leave_missing(&mut members, &desired);
        for (addr, weight) in desired {
            self.join_or_reweigh(&mut members, addr, weight);
        }
        self.publish(&members);
    }

    /// Records the addresses a host name resolved to, then applies membership.
    pub(crate) fn set_resolved(&self, name: &str, addrs: Vec<SocketAddr>) {
        let changed = {
            let mut members = self.members();
            members.resolved.insert(name.to_owned(), addrs.clone()) != Some(addrs)
        };
        if changed {
            self.apply_membership();
        }
    }

    /// Publishes a fresh candidate snapshot after a health change.
    pub(crate) fn rebuild(&self) {
        let members = self.members();
        self.publish(&members);
    }

    /// Every current endpoint, ordered by address.
    pub(crate) fn endpoints(&self) -> Vec<Arc<Endpoint>> {
        let mut list: Vec<_> = self.members().endpoints.values().cloned().collect();
        list.sort_by_key(|ep| ep.addr);
        list
    }

    /// The addresses (with weights) the configuration asks for now.
    fn desired(&self, members: &mut Members) -> Vec<(SocketAddr, u32)> {
        let settings = self.settings.load();
        let names: Vec<&str> = settings
            .specs
            .iter()
            .filter_map(|s| match &s.target {
                Target::Name(n) => Some(n.as_str()),
                Target::Static(_) => None,
            })
            .collect();
        members
            .resolved
            .retain(|name, _| names.contains(&name.as_str()));

        let mut desired: Vec<(SocketAddr, u32)> = Vec::new();
        for spec in &settings.specs {
            let addrs = match &spec.target {
                Target::Static(addr) => std::slice::from_ref(addr),
                Target::Name(name) => members.resolved.get(name).map_or(&[][..], Vec::as_slice),
            };
            for addr in addrs {
                if !desired.iter().any(|(a, _)| a == addr) {
                    desired.push((*addr, spec.weight));
                }
            }
        }
        desired
    }

    fn leave_missing(&self, members: &mut Members, desired: &[(SocketAddr, u32)]) {
        members.endpoints.retain(|addr, ep| {
            let stays = desired.iter().any(|(a, _)| a == addr);
            if !stays {
                info!(pool = %self.name, endpoint = %addr, "endpoint left");
                ep.metrics.remove_gauges();
            }
            stays
        });
    }

    fn join_or_reweigh(&self, members: &mut Members, addr: SocketAddr, weight: u32) {
        if let Some(ep) = members.endpoints.get(&addr) {
            ep.set_weight(weight);
            return;
        }

        members.next_id += 1;
        let metrics = self.metrics.endpoint(&self.name, &addr.to_string());
        let ep = Endpoint::new(members.next_id, addr, weight, self.epoch, metrics);
        info!(pool = %self.name, endpoint = %addr, weight, "endpoint joined");
        members.endpoints.insert(addr, Arc::new(ep));
    }

    /// Swaps in the endpoints that take requests, in address order.
    fn publish(&self, members: &Members) {
        let mut list: Vec<_> = members
            .endpoints
            .values()
            .filter(|ep| ep.is_available())
            .cloned()
            .collect();
        list.sort_by_key(|ep| ep.addr);
        let healthy = list.len();
        let balance = self.settings.load().cfg.balance;
        self.candidates
            .store(Arc::new(Candidates::new(list, balance)));
        self.handles
            .healthy_endpoints
            .set(i64::try_from(healthy).unwrap_or(i64::MAX));
    }
}
