//! The fraud rules: each rule that fires adds its weight to a 0–100 score and names a
//! reason; the score decides `approve`, `review` or `decline`.
//!
//! Rules read [`Signals`]: counts over sliding windows ending at the payment being scored,
//! the payment itself included. The live velocity store and the backtest compute them the
//! same way (see [`Window`]), so what a merchant tunes in a backtest is what runs.

use serde::{Deserialize, Serialize};

/// A merchant's rules. Every field has a default, so a merchant overrides only what it
/// tunes (`{"card_velocity": {"max": 3}}`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FraudRules {
    /// More than `max` payments with one card within `window_secs`.
    pub card_velocity: CountRule,
    /// More than `max` payments from one IP address.
    pub ip_velocity: CountRule,
    /// More than `max` payments with one customer e-mail.
    pub email_velocity: CountRule,
    /// One IP paying with more than `max` distinct cards.
    pub cards_per_ip: CountRule,
    /// Card testing: more than `max` small payments (below `small_amount`) from one IP.
    pub card_testing: CardTestingRule,
    /// An amount above `threshold` (minor units, any currency unless listed in
    /// `per_currency`).
    pub high_amount: AmountRule,
    /// The customer's country is not the card's issuing country.
    pub country_mismatch: FlagRule,
    /// Scores at or above this are held for a merchant user's review.
    pub review_at: u32,
    /// Scores at or above this are declined without asking the processor.
    pub decline_at: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CountRule {
    pub enabled: bool,
    pub max: u32,
    pub window_secs: u64,
    pub weight: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CardTestingRule {
    pub enabled: bool,
    pub max: u32,
    pub window_secs: u64,
    pub small_amount: i64,
    pub weight: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AmountRule {
    pub enabled: bool,
    pub threshold: i64,
    /// Currency-specific thresholds (`{"IDR": 50000000}`), in minor units.
    #[serde(default)]
    pub per_currency: std::collections::BTreeMap<String, i64>,
    pub weight: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FlagRule {
    pub enabled: bool,
    pub weight: u32,
}

const HOUR: u64 = 3600;

impl FraudRules {
    /// Rules from a merchant's partial document: a JSON object whose fields, at any depth,
    /// replace the defaults, so `{"card_velocity": {"max": 1}}` changes one number and
    /// keeps the rule's other fields. Anything but an object, an unknown field or a value
    /// of the wrong type is refused with serde's message.
    pub fn from_partial(partial: &serde_json::Value) -> Result<FraudRules, String> {
        if !partial.is_object() {
            return Err("fraud rules must be a JSON object".into());
        }
        let mut merged = serde_json::to_value(FraudRules::default()).map_err(|e| e.to_string())?;
        merge(&mut merged, partial);
        serde_json::from_value(merged).map_err(|e| e.to_string())
    }
}

/// Overlays `patch` on `base`: objects merge field by field, anything else replaces.
fn merge(base: &mut serde_json::Value, patch: &serde_json::Value) {
    match (base, patch) {
        (serde_json::Value::Object(base), serde_json::Value::Object(patch)) => {
            for (key, value) in patch {
                match base.get_mut(key) {
                    // `per_currency` is a map of the merchant's own: replaced, not merged.
                    Some(existing) if key != "per_currency" => merge(existing, value),
                    _ => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, patch) => *base = patch.clone(),
    }
}

impl Default for FraudRules {
    fn default() -> Self {
        let count = |max, window_secs, weight| CountRule {
            enabled: true,
            max,
            window_secs,
            weight,
        };
        FraudRules {
            // Weights: a rule that alone means "a person should look" reaches review (65);
            // card testing alone declines.
            card_velocity: count(5, HOUR, 70),
            ip_velocity: count(20, HOUR, 40),
            email_velocity: count(10, HOUR, 40),
            cards_per_ip: count(3, HOUR, 65),
            card_testing: CardTestingRule {
                enabled: true,
                max: 3,
                window_secs: 600,
                small_amount: 200,
                weight: 80,
            },
            high_amount: AmountRule {
                enabled: true,
                threshold: 1_000_000,
                per_currency: [
                    ("IDR".to_string(), 5_000_000_000),
                    ("JPY".to_string(), 1_000_000),
                ]
                .into_iter()
                .collect(),
                weight: 30,
            },
            country_mismatch: FlagRule {
                enabled: true,
                weight: 25,
            },
            review_at: 65,
            decline_at: 75,
        }
    }
}

/// What the rules look at, for one payment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signals {
    pub amount: i64,
    pub currency: String,
    /// Payments with this card in the card-velocity window, this one included.
    pub card_count: u32,
    pub ip_count: u32,
    pub email_count: u32,
    /// Distinct cards seen from this IP in the cards-per-IP window, this one included.
    pub cards_from_ip: u32,
    /// Payments below the card-testing amount from this IP in its window, this one
    /// included (0 when this payment is not small).
    pub small_from_ip: u32,
    pub customer_country: Option<String>,
    pub card_country: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Approve,
    Review,
    Decline,
}

/// The verdict on one payment: `{score, decision, reasons}` in the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assessment {
    pub score: u32,
    pub decision: Decision,
    /// Reason codes of the rules that fired, in rule order.
    pub reasons: Vec<&'static str>,
}

/// The reason codes, in evaluation order (also the backtest's row order).
pub const REASONS: &[&str] = &[
    "card_velocity",
    "ip_velocity",
    "email_velocity",
    "cards_per_ip",
    "card_testing",
    "high_amount",
    "country_mismatch",
];

impl FraudRules {
    /// Scores one payment.
    pub fn assess(&self, s: &Signals) -> Assessment {
        let over = |r: &CountRule, n: u32| r.enabled && n > r.max;
        let amount_limit = self
            .high_amount
            .per_currency
            .get(&s.currency)
            .copied()
            .unwrap_or(self.high_amount.threshold);
        let mismatch = match (&s.customer_country, &s.card_country) {
            (Some(a), Some(b)) => !a.eq_ignore_ascii_case(b),
            _ => false,
        };
        let fired = [
            (
                over(&self.card_velocity, s.card_count),
                self.card_velocity.weight,
            ),
            (over(&self.ip_velocity, s.ip_count), self.ip_velocity.weight),
            (
                over(&self.email_velocity, s.email_count),
                self.email_velocity.weight,
            ),
            (
                over(&self.cards_per_ip, s.cards_from_ip),
                self.cards_per_ip.weight,
            ),
            (
                self.card_testing.enabled && s.small_from_ip > self.card_testing.max,
                self.card_testing.weight,
            ),
            (
                self.high_amount.enabled && s.amount > amount_limit,
                self.high_amount.weight,
            ),
            (
                self.country_mismatch.enabled && mismatch,
                self.country_mismatch.weight,
            ),
        ];
        let mut score = 0u32;
        let mut reasons = Vec::new();
        for ((hit, weight), reason) in fired.into_iter().zip(REASONS) {
            if hit {
                score = score.saturating_add(weight);
                reasons.push(*reason);
            }
        }
        let score = score.min(100);
        let decision = if score >= self.decline_at {
            Decision::Decline
        } else if score >= self.review_at {
            Decision::Review
        } else {
            Decision::Approve
        };
        Assessment {
            score,
            decision,
            reasons,
        }
    }

    /// Range checks serde cannot express; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=100).contains(&self.review_at) || !(1..=100).contains(&self.decline_at) {
            return Err("review_at and decline_at must be between 1 and 100".into());
        }
        if self.review_at > self.decline_at {
            return Err("review_at must not be above decline_at".into());
        }
        for (name, w) in [
            ("card_velocity", self.card_velocity.window_secs),
            ("ip_velocity", self.ip_velocity.window_secs),
            ("email_velocity", self.email_velocity.window_secs),
            ("cards_per_ip", self.cards_per_ip.window_secs),
            ("card_testing", self.card_testing.window_secs),
        ] {
            if !(1..=30 * 24 * HOUR).contains(&w) {
                return Err(format!(
                    "{name}.window_secs must be between 1 s and 30 days"
                ));
            }
        }
        Ok(())
    }

    /// The longest window any rule looks back over: how much history to keep.
    pub fn longest_window_secs(&self) -> u64 {
        [
            self.card_velocity.window_secs,
            self.ip_velocity.window_secs,
            self.email_velocity.window_secs,
            self.cards_per_ip.window_secs,
            self.card_testing.window_secs,
        ]
        .into_iter()
        .max()
        .unwrap_or(HOUR)
    }
}

/// One past payment, as far as the rules care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Unix seconds.
    pub at: i64,
    /// The card's fingerprint (never the number).
    pub card: String,
    pub ip: Option<String>,
    pub email: Option<String>,
    pub amount: i64,
}

/// Recent payments of one merchant, oldest first, for computing [`Signals`] in process
/// (the backtest; a single node). Events older than the longest window are dropped.
#[derive(Debug, Default)]
pub struct Window {
    events: std::collections::VecDeque<Event>,
}

impl Window {
    /// The signals for `next` (not yet recorded) at its time.
    pub fn signals(
        &self,
        rules: &FraudRules,
        next: &Event,
        currency: &str,
        customer_country: Option<&str>,
        card_country: Option<&str>,
    ) -> Signals {
        let within = |secs: u64| {
            let from = next.at - secs as i64;
            self.events
                .iter()
                .filter(move |e| e.at > from && e.at <= next.at)
        };
        let same = |a: &Option<String>, b: &Option<String>| a.is_some() && a == b;
        let card_count = 1 + within(rules.card_velocity.window_secs)
            .filter(|e| e.card == next.card)
            .count() as u32;
        let ip_count = 1 + within(rules.ip_velocity.window_secs)
            .filter(|e| same(&e.ip, &next.ip))
            .count() as u32;
        let email_count = 1 + within(rules.email_velocity.window_secs)
            .filter(|e| same(&e.email, &next.email))
            .count() as u32;
        let mut cards: std::collections::BTreeSet<&str> = within(rules.cards_per_ip.window_secs)
            .filter(|e| same(&e.ip, &next.ip))
            .map(|e| e.card.as_str())
            .collect();
        cards.insert(&next.card);
        let small = rules.card_testing.small_amount;
        let small_from_ip = if next.amount < small {
            1 + within(rules.card_testing.window_secs)
                .filter(|e| same(&e.ip, &next.ip) && e.amount < small)
                .count() as u32
        } else {
            0
        };
        Signals {
            amount: next.amount,
            currency: currency.to_string(),
            card_count,
            ip_count: if next.ip.is_some() { ip_count } else { 0 },
            email_count: if next.email.is_some() { email_count } else { 0 },
            cards_from_ip: if next.ip.is_some() {
                cards.len() as u32
            } else {
                0
            },
            small_from_ip: if next.ip.is_some() { small_from_ip } else { 0 },
            customer_country: customer_country.map(str::to_string),
            card_country: card_country.map(str::to_string),
        }
    }

    /// Records a payment and forgets what no rule can see any more.
    pub fn record(&mut self, rules: &FraudRules, event: Event) {
        let horizon = event.at - rules.longest_window_secs() as i64;
        while self.events.front().is_some_and(|e| e.at <= horizon) {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(at: i64, card: &str, ip: &str, amount: i64) -> Event {
        Event {
            at,
            card: card.into(),
            ip: Some(ip.into()),
            email: Some(format!("{card}@example.id")),
            amount,
        }
    }

    fn run(rules: &FraudRules, events: &[Event]) -> Vec<Assessment> {
        let mut w = Window::default();
        events
            .iter()
            .map(|e| {
                let a = rules.assess(&w.signals(rules, e, "USD", None, None));
                w.record(rules, e.clone());
                a
            })
            .collect()
    }

    #[test]
    fn the_sixth_payment_with_one_card_in_an_hour_is_held() {
        let rules = FraudRules::default();
        // Different IPs, so only the card velocity counts.
        let events: Vec<Event> = (0..6)
            .map(|i| event(1000 + i * 60, "card-a", &format!("10.0.0.{i}"), 5000))
            .collect();
        let out = run(&rules, &events);
        assert!(out[..5].iter().all(|a| a.decision == Decision::Approve));
        assert_eq!(out[5].decision, Decision::Review);
        assert_eq!(out[5].reasons, ["card_velocity"]);
        assert_eq!(out[5].score, 70);
        // An hour later the window has moved on.
        let mut later = events.clone();
        later.push(event(1000 + 5 * 60 + 3600, "card-a", "10.0.0.9", 5000));
        assert_eq!(run(&rules, &later)[6].decision, Decision::Approve);
    }

    #[test]
    fn card_testing_and_many_cards_from_one_ip_decline() {
        let rules = FraudRules::default();
        let events: Vec<Event> = (0..4)
            .map(|i| event(1000 + i, &format!("card-{i}"), "203.0.113.7", 100))
            .collect();
        let out = run(&rules, &events);
        let last = &out[3];
        assert_eq!(last.decision, Decision::Decline);
        assert_eq!(last.reasons, ["cards_per_ip", "card_testing"]);
        assert_eq!(last.score, 100, "capped at 100");
    }

    #[test]
    fn amount_and_country_rules_and_their_thresholds() {
        let rules = FraudRules::default();
        let s = |amount, currency: &str, cust: &str, card: &str| Signals {
            amount,
            currency: currency.into(),
            card_count: 1,
            customer_country: Some(cust.into()),
            card_country: Some(card.into()),
            ..Signals::default()
        };
        let a = rules.assess(&s(2_000_000, "USD", "ID", "ID"));
        assert_eq!(
            (a.score, a.reasons.as_slice()),
            (30, ["high_amount"].as_slice())
        );
        // IDR has its own threshold: 2,000,000 minor units is small there.
        assert!(rules
            .assess(&s(2_000_000, "IDR", "ID", "ID"))
            .reasons
            .is_empty());
        let a = rules.assess(&s(2_000_000, "USD", "ID", "US"));
        assert_eq!(a.score, 55);
        assert_eq!(a.decision, Decision::Approve);
        let strict = FraudRules {
            review_at: 50,
            ..FraudRules::default()
        };
        assert_eq!(
            strict.assess(&s(2_000_000, "USD", "ID", "us")).decision,
            Decision::Review
        );
    }

    #[test]
    fn merchants_override_only_what_they_tune() {
        let rules: FraudRules = serde_json::from_str(
            r#"{"card_velocity": {"enabled": true, "max": 2, "window_secs": 600, "weight": 80}}"#,
        )
        .unwrap();
        assert_eq!(rules.card_velocity.max, 2);
        assert_eq!(rules.ip_velocity, FraudRules::default().ip_velocity);
        assert!(rules.validate().is_ok());
        assert!(serde_json::from_str::<FraudRules>(r#"{"no_such_rule": {}}"#).is_err());
        // A partial rule keeps the fields it leaves out (as the README promises).
        let partial =
            FraudRules::from_partial(&serde_json::json!({"card_velocity": {"max": 1}})).unwrap();
        assert_eq!(partial.card_velocity.max, 1);
        assert_eq!(
            partial.card_velocity.window_secs,
            FraudRules::default().card_velocity.window_secs
        );
        assert!(FraudRules::from_partial(&serde_json::json!([1, 2])).is_err());
        assert!(FraudRules::from_partial(&serde_json::json!("x")).is_err());
        assert!(
            FraudRules::from_partial(&serde_json::json!({"card_velocity": {"nope": 1}})).is_err()
        );
        assert!(FraudRules::from_partial(&serde_json::json!({"review_at": "high"})).is_err());
        let bad = FraudRules {
            review_at: 90,
            decline_at: 80,
            ..FraudRules::default()
        };
        assert!(bad.validate().is_err());
    }
}
