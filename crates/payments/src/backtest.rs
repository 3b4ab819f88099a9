//! `rampart fraud backtest FILE.csv`: replay a merchant's past payments through the rules
//! before turning them on.
//!
//! The CSV has a header row. Columns, by name: `time` (RFC 3339 or Unix seconds), `card`
//! (a card id or fingerprint — never a card number), `amount` (minor units), `currency`,
//! `ip`, `country` (the customer's), and optionally `email`, `card_country` and `fraud`
//! (the label: `1`/`0`, `true`/`false`, `yes`/`no`). Rows are replayed in time order, each
//! scored against the rows before it, as the live engine would have scored it.

use std::io::Read;

use serde::Serialize;

use crate::fraud::{Decision, Event, FraudRules, Window, REASONS};

#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error("line {line}: {reason}")]
    Row { line: u64, reason: String },
    #[error("the CSV has no {0:?} column")]
    MissingColumn(&'static str),
    #[error("cannot read the CSV: {0}")]
    Csv(#[from] csv::Error),
}

/// How one rule (or the whole rule set) did.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RuleReport {
    pub name: String,
    /// Payments it fired on (for the whole set: decided `review` or `decline`).
    pub flagged: u64,
    /// With labels: flagged payments labelled fraud.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub true_positives: Option<u64>,
    /// flagged ∧ fraud / flagged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precision: Option<f64>,
    /// flagged ∧ fraud / fraud.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recall: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub payments: u64,
    /// Labelled fraud, when the file has labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fraud: Option<u64>,
    pub approved: u64,
    pub reviewed: u64,
    pub declined: u64,
    pub rules: Vec<RuleReport>,
    pub overall: RuleReport,
}

struct Row {
    event: Event,
    currency: String,
    country: Option<String>,
    card_country: Option<String>,
    fraud: Option<bool>,
}

fn parse_time(text: &str) -> Option<i64> {
    if let Ok(secs) = text.parse::<i64>() {
        return Some(secs);
    }
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

fn parse_label(text: &str) -> Result<Option<bool>, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "" => Ok(None),
        "1" | "true" | "yes" => Ok(Some(true)),
        "0" | "false" | "no" => Ok(Some(false)),
        other => Err(format!(
            "fraud label {other:?} is not 1/0, true/false or yes/no"
        )),
    }
}

fn read_rows(input: impl Read) -> Result<Vec<Row>, BacktestError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(input);
    let headers = reader.headers()?.clone();
    let col = |name: &'static str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let need = |name: &'static str| col(name).ok_or(BacktestError::MissingColumn(name));
    let (t, card, amount, currency) = (
        need("time")?,
        need("card")?,
        need("amount")?,
        need("currency")?,
    );
    let (ip, country) = (need("ip")?, need("country")?);
    let (email, card_country, fraud) = (col("email"), col("card_country"), col("fraud"));
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record?;
        let line = record.position().map_or(0, |p| p.line());
        let bad = |reason: String| BacktestError::Row { line, reason };
        let field = |i: usize| record.get(i).unwrap_or("");
        let opt = |i: Option<usize>| i.map(field).filter(|v| !v.is_empty()).map(str::to_string);
        let at = parse_time(field(t)).ok_or_else(|| {
            bad(format!(
                "time {:?} is not RFC 3339 or Unix seconds",
                field(t)
            ))
        })?;
        let amount: i64 = field(amount).parse().map_err(|_| {
            bad(format!(
                "amount {:?} is not an integer of minor units",
                field(amount)
            ))
        })?;
        if field(card).is_empty() {
            return Err(bad("card is empty".into()));
        }
        if field(card).chars().filter(char::is_ascii_digit).count() >= 12 {
            // A card id column must not hold card numbers: refuse rather than process one.
            return Err(bad(
                "card looks like a card number; use a card id or fingerprint".into(),
            ));
        }
        rows.push(Row {
            event: Event {
                at,
                card: field(card).to_string(),
                ip: opt(Some(ip)),
                email: opt(email),
                amount,
            },
            currency: field(currency).to_ascii_uppercase(),
            country: opt(Some(country)),
            card_country: opt(card_country),
            fraud: fraud
                .map(|i| parse_label(field(i)))
                .transpose()
                .map_err(bad)?
                .flatten(),
        });
    }
    // Stable: rows with one timestamp keep their file order.
    rows.sort_by_key(|r| r.event.at);
    Ok(rows)
}

fn report(name: &str, flagged: &[bool], labels: &[Option<bool>], labelled: bool) -> RuleReport {
    let count = flagged.iter().filter(|f| **f).count() as u64;
    if !labelled {
        return RuleReport {
            name: name.to_string(),
            flagged: count,
            ..RuleReport::default()
        };
    }
    let tp = flagged
        .iter()
        .zip(labels)
        .filter(|(f, l)| **f && **l == Some(true))
        .count() as u64;
    let fraud = labels.iter().filter(|l| **l == Some(true)).count() as u64;
    let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
    RuleReport {
        name: name.to_string(),
        flagged: count,
        true_positives: Some(tp),
        precision: ratio(tp, count),
        recall: ratio(tp, fraud),
    }
}

/// Replays the CSV through `rules`.
pub fn run(rules: &FraudRules, input: impl Read) -> Result<Report, BacktestError> {
    let rows = read_rows(input)?;
    let mut window = Window::default();
    let mut per_rule: Vec<Vec<bool>> = vec![Vec::with_capacity(rows.len()); REASONS.len()];
    let mut overall = Vec::with_capacity(rows.len());
    let (mut approved, mut reviewed, mut declined) = (0, 0, 0);
    for row in &rows {
        let signals = window.signals(
            rules,
            &row.event,
            &row.currency,
            row.country.as_deref(),
            row.card_country.as_deref(),
        );
        let a = rules.assess(&signals);
        for (i, reason) in REASONS.iter().enumerate() {
            per_rule[i].push(a.reasons.contains(reason));
        }
        overall.push(a.decision != Decision::Approve);
        match a.decision {
            Decision::Approve => approved += 1,
            Decision::Review => reviewed += 1,
            Decision::Decline => declined += 1,
        }
        window.record(rules, row.event.clone());
    }
    let labels: Vec<Option<bool>> = rows.iter().map(|r| r.fraud).collect();
    let labelled = labels.iter().any(Option::is_some);
    Ok(Report {
        payments: rows.len() as u64,
        fraud: labelled.then(|| labels.iter().filter(|l| **l == Some(true)).count() as u64),
        approved,
        reviewed,
        declined,
        rules: REASONS
            .iter()
            .zip(&per_rule)
            .map(|(name, flagged)| report(name, flagged, &labels, labelled))
            .collect(),
        overall: report("all rules", &overall, &labels, labelled),
    })
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}%", v * 100.0));
        writeln!(
            f,
            "{} payments: {} approved, {} review, {} declined{}",
            self.payments,
            self.approved,
            self.reviewed,
            self.declined,
            self.fraud
                .map_or(String::new(), |n| format!("; {n} labelled fraud"))
        )?;
        writeln!(
            f,
            "{:<18} {:>8} {:>10} {:>8}",
            "rule", "flagged", "precision", "recall"
        )?;
        for r in self.rules.iter().chain(std::iter::once(&self.overall)) {
            writeln!(
                f,
                "{:<18} {:>8} {:>10} {:>8}",
                r.name,
                r.flagged,
                pct(r.precision),
                pct(r.recall)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "time,card,amount,currency,ip,country,card_country,fraud
2026-01-01T10:00:00Z,c1,5000,USD,10.0.0.1,US,US,0
2026-01-01T10:01:00Z,c1,5000,USD,10.0.0.2,US,US,0
2026-01-01T10:02:00Z,c1,5000,USD,10.0.0.3,US,US,0
2026-01-01T10:03:00Z,c1,5000,USD,10.0.0.4,US,US,0
2026-01-01T10:04:00Z,c1,5000,USD,10.0.0.5,US,US,0
2026-01-01T10:05:00Z,c1,5000,USD,10.0.0.6,US,US,1
1767265200,c9,2000000,USD,10.0.9.9,ID,US,1
1767265300,c8,1500,USD,10.0.8.8,US,US,0
";

    #[test]
    fn replays_in_time_order_and_scores_each_rule() {
        let r = run(&FraudRules::default(), CSV.as_bytes()).unwrap();
        assert_eq!(r.payments, 8);
        assert_eq!(r.fraud, Some(2));
        assert_eq!((r.approved, r.reviewed, r.declined), (7, 1, 0));
        let card = &r.rules[0];
        assert_eq!(card.name, "card_velocity");
        assert_eq!((card.flagged, card.true_positives), (1, Some(1)));
        assert_eq!((card.precision, card.recall), (Some(1.0), Some(0.5)));
        let amount = r.rules.iter().find(|x| x.name == "high_amount").unwrap();
        assert_eq!(amount.flagged, 1);
        // high_amount + country_mismatch = 55: flagged by two rules, still approved.
        assert_eq!(r.overall.flagged, 1);
        assert_eq!(r.overall.recall, Some(0.5));
        let text = r.to_string();
        assert!(
            text.contains("card_velocity") && text.contains("100.0%"),
            "{text}"
        );
    }

    #[test]
    fn bad_rows_are_named_and_card_numbers_refused() {
        let no_col = "time,card,amount,currency,ip\n1,c,1,USD,1.1.1.1\n";
        assert!(matches!(
            run(&FraudRules::default(), no_col.as_bytes()),
            Err(BacktestError::MissingColumn("country"))
        ));
        let bad_amount = "time,card,amount,currency,ip,country\n1,c,12.50,USD,1.1.1.1,US\n";
        let e = run(&FraudRules::default(), bad_amount.as_bytes()).unwrap_err();
        assert!(e.to_string().starts_with("line 2:"), "{e}");
        let pan = "time,card,amount,currency,ip,country\n1,4111111111111111,1,USD,1.1.1.1,US\n";
        let e = run(&FraudRules::default(), pan.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("card number"), "{e}");
        assert!(!e.to_string().contains("4111"), "{e}");
    }

    #[test]
    fn without_labels_there_is_no_precision() {
        let csv = "time,card,amount,currency,ip,country\n1,c,100,USD,1.1.1.1,US\n";
        let r = run(&FraudRules::default(), csv.as_bytes()).unwrap();
        assert_eq!(r.fraud, None);
        assert_eq!(r.overall.precision, None);
        let json = serde_json::to_value(&r).unwrap();
        assert!(json["overall"].get("precision").is_none());
    }
}
