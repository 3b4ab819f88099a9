//! Login outcome counters.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Default)]
pub(crate) struct IdentityMetrics {
    logins: Family<OutcomeLabels, Counter>,
}

impl IdentityMetrics {
    pub(crate) fn register(registry: &mut Registry) -> IdentityMetrics {
        let m = IdentityMetrics::default();
        registry.register(
            "rampart_login_attempts",
            "Login attempts by outcome: success, invalid_credentials, locked, unavailable",
            m.logins.clone(),
        );
        m
    }

    pub(crate) fn login(&self, outcome: &'static str) {
        self.logins.get_or_create(&OutcomeLabels { outcome }).inc();
    }
}
