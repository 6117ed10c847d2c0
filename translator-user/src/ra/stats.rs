//! Router advertisement counters, shared with `translator stats` and the metrics endpoint
//! through `controller.json` (section `"ra"`), like the DNS64 counters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use super::wire::Refusal;

/// Counters of the sender/responder. Cheap to bump from any task.
#[derive(Debug, Default)]
pub struct RaStats {
    /// Router advertisements sent (all kinds).
    pub sent: AtomicU64,
    /// ... of which unsolicited (the interval timer).
    pub sent_unsolicited: AtomicU64,
    /// ... of which answers to solicitations (multicast).
    pub sent_solicited: AtomicU64,
    /// ... of which final advertisements (router lifetime 0) when advertising stops.
    pub sent_final: AtomicU64,
    /// Advertisements that could not be sent (no link-local address yet, a socket error).
    pub send_errors: AtomicU64,
    /// Router solicitations received.
    pub rs_received: AtomicU64,
    /// Valid solicitations an advertisement has answered.
    pub rs_answered: AtomicU64,
    /// Solicitations refused as invalid (RFC 4861 section 6.1.1); the reasons below.
    pub rs_refused: AtomicU64,
    pub rs_refused_hop_limit: AtomicU64,
    pub rs_refused_code: AtomicU64,
    pub rs_refused_too_short: AtomicU64,
    pub rs_refused_option_length: AtomicU64,
    pub rs_refused_truncated_option: AtomicU64,
    pub rs_refused_source_slla: AtomicU64,
}

impl RaStats {
    pub(crate) fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(c: &AtomicU64, n: u64) {
        if n > 0 {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Counts a refused solicitation under its reason.
    pub(crate) fn refused(&self, why: Refusal) {
        Self::bump(&self.rs_refused);
        Self::bump(match why {
            Refusal::HopLimit(_) | Refusal::HopLimitUnknown => &self.rs_refused_hop_limit,
            Refusal::Code(_) => &self.rs_refused_code,
            Refusal::TooShort(_) | Refusal::NotSolicitation(_) => &self.rs_refused_too_short,
            Refusal::OptionLength(_) => &self.rs_refused_option_length,
            Refusal::Truncated { .. } => &self.rs_refused_truncated_option,
            Refusal::SourceLinkLayerFromUnspecified => &self.rs_refused_source_slla,
        });
    }

    /// All counters by kebab-case name.
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        let all: [(&'static str, &AtomicU64); 14] = [
            ("ra-sent", &self.sent),
            ("ra-sent-unsolicited", &self.sent_unsolicited),
            ("ra-sent-solicited", &self.sent_solicited),
            ("ra-sent-final", &self.sent_final),
            ("ra-send-errors", &self.send_errors),
            ("rs-received", &self.rs_received),
            ("rs-answered", &self.rs_answered),
            ("rs-refused", &self.rs_refused),
            ("rs-refused-hop-limit", &self.rs_refused_hop_limit),
            ("rs-refused-code", &self.rs_refused_code),
            ("rs-refused-too-short", &self.rs_refused_too_short),
            ("rs-refused-option-length", &self.rs_refused_option_length),
            (
                "rs-refused-truncated-option",
                &self.rs_refused_truncated_option,
            ),
            ("rs-refused-source-slla", &self.rs_refused_source_slla),
        ];
        all.into_iter()
            .map(|(k, v)| (k, v.load(Ordering::Relaxed)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_its_counter_and_the_total() {
        let s = RaStats::default();
        let all = [
            Refusal::HopLimit(64),
            Refusal::Code(1),
            Refusal::TooShort(4),
            Refusal::OptionLength(8),
            Refusal::Truncated {
                at: 8,
                needed: 16,
                left: 8,
            },
            Refusal::SourceLinkLayerFromUnspecified,
        ];
        for r in all {
            s.refused(r);
        }
        let snap = s.snapshot();
        assert_eq!(snap["rs-refused"], 6);
        for r in all {
            assert_eq!(snap[r.counter()], 1, "{}", r.counter());
        }
    }
}
