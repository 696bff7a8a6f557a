//! The routing table: service name to pool, swapped whole on reload.
//!
//! The request path loads one `arc-swap` snapshot and looks the service up in it.
//! A reload validates the whole new configuration first, then updates the pools
//! that stay (their endpoints keep their health and connections), creates the new
//! ones and shuts down the removed ones after the swap, so a call in flight on a
//! removed pool still finishes.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tracing::info;
use upstream::{Pool, PoolMetrics, PoolState};

use crate::config::{ConfigError, GatewayConfig};
use crate::metrics::{CallMetrics, GatewayMetrics, MethodTable, UNKNOWN_SERVICE};

/// One routable service.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) pool: Pool,
    pub(crate) methods: MethodTable,
}

/// The routes in force, shared by every request.
#[derive(Debug)]
pub(crate) struct Routes {
    table: ArcSwap<HashMap<String, Arc<Route>>>,
    pool_metrics: PoolMetrics,
    metrics: GatewayMetrics,
    /// Labels of calls that name no configured service.
    unknown: MethodTable,
}

impl Routes {
    /// Builds a pool per configured service. Must run inside a Tokio runtime.
    pub(crate) fn new(
        cfg: &GatewayConfig,
        pool_metrics: PoolMetrics,
        metrics: GatewayMetrics,
    ) -> Result<Self, ConfigError> {
        let routes = Routes {
            table: ArcSwap::default(),
            pool_metrics,
            unknown: MethodTable::new(UNKNOWN_SERVICE, &metrics),
            metrics,
        };
        routes.apply(cfg)?;
        Ok(routes)
    }

    /// The route of `service`, if it is configured.
    pub(crate) fn get(&self, service: &str) -> Option<Arc<Route>> {
        self.table.load().get(service).cloned()
    }

    /// The metrics of calls that reach no service (unknown or unreadable).
    pub(crate) fn unknown(&self) -> Arc<CallMetrics> {
        self.unknown.other()
    }

    /// Makes `cfg` the pool list, or changes nothing and says why.
    pub(crate) fn apply(&self, cfg: &GatewayConfig) -> Result<(), ConfigError> {
        cfg.validate()?;
        let old = self.table.load_full();
        let mut next = HashMap::with_capacity(cfg.services.len());
        for (name, pool_cfg) in cfg.pools() {
            let route = match old.get(name) {
                Some(route) => update(name, route, pool_cfg)?,
                None => self.create(name, pool_cfg)?,
            };
            next.insert(name.to_owned(), route);
        }
        self.table.store(Arc::new(next));
        self.retire(&old);
        Ok(())
    }

    /// Every pool's state, ordered by service name.
    pub(crate) fn states(&self) -> Vec<PoolState> {
        let table = self.table.load();
        let mut states: Vec<PoolState> = table.values().map(|r| r.pool.state()).collect();
        states.sort_by(|a, b| a.name.cmp(&b.name));
        states
    }

    /// Stops every pool's background tasks.
    pub(crate) fn shutdown(&self) {
        for route in self.table.load().values() {
            route.pool.shutdown();
        }
    }

    fn create(&self, name: &str, cfg: upstream::PoolConfig) -> Result<Arc<Route>, ConfigError> {
        let pool = Pool::new(cfg, &self.pool_metrics).map_err(|source| pool_error(name, source))?;
        info!(service = name, "service added");
        let methods = MethodTable::new(name, &self.metrics);
        Ok(Arc::new(Route { pool, methods }))
    }

    /// Shuts down the pools of `old` that the current table no longer holds.
    fn retire(&self, old: &HashMap<String, Arc<Route>>) {
        let current = self.table.load();
        for (name, route) in old {
            if !current.contains_key(name) {
                info!(service = %name, "service removed");
                route.pool.shutdown();
            }
        }
    }
}

fn update(
    name: &str,
    route: &Arc<Route>,
    cfg: upstream::PoolConfig,
) -> Result<Arc<Route>, ConfigError> {
    route
        .pool
        .try_update(cfg)
        .map_err(|source| pool_error(name, source))?;
    Ok(route.clone())
}

fn pool_error(name: &str, source: upstream::ConfigError) -> ConfigError {
    ConfigError::Pool {
        service: name.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    fn routes(cfg: &GatewayConfig) -> Routes {
        let mut registry = Registry::default();
        let metrics = GatewayMetrics::register(&mut registry);
        Routes::new(cfg, PoolMetrics::register(&mut registry), metrics).expect("valid")
    }

    #[tokio::test]
    async fn reload_adds_keeps_and_removes_services() {
        let mut cfg = GatewayConfig::default();
        let routes = routes(&cfg);
        let calc = routes.get("calc").expect("calc routed");
        assert!(routes.get("geo").is_none());

        cfg.apply_service_flags(&[
            "calc=127.0.0.1:1,127.0.0.1:2".into(),
            "geo=127.0.0.1:3".into(),
        ])
        .expect("flags");
        routes.apply(&cfg).expect("valid reload");
        let kept = routes.get("calc").expect("calc stays");
        assert!(Arc::ptr_eq(&calc, &kept), "a kept service keeps its pool");
        assert_eq!(kept.pool.state().endpoints.len(), 2);
        assert!(routes.get("geo").is_some());
        assert!(routes.get("stats").is_none());
        assert_eq!(routes.states().len(), 2);
    }

    #[tokio::test]
    async fn an_invalid_reload_changes_nothing() {
        let routes = routes(&GatewayConfig::default());
        let mut cfg = GatewayConfig::default();
        cfg.services.get_mut("stats").expect("stats").endpoints = vec!["nowhere".into()];
        cfg.services.remove("calc");
        assert!(routes.apply(&cfg).is_err());
        assert!(routes.get("calc").is_some(), "old table kept");
        assert_eq!(
            routes
                .get("stats")
                .expect("stats")
                .pool
                .state()
                .endpoints
                .len(),
            1
        );
    }
}
