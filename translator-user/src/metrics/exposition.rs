//! Exposition: a [`Snapshot`] written by `prometheus-client` in the Prometheus text format 0.0.4
//! ([`Format::Prometheus`]) or in OpenMetrics 1.0.0 text ([`Format::OpenMetrics`]), and the
//! choice between the two from the scraper's `Accept` header ([`Format::negotiate`]).
//!
//! The snapshot is handed to the encoder as a [`Collector`] of constant counters and gauges
//! (values read elsewhere at scrape time, like an exporter's), so the crate writes every line:
//! names, `_total` suffixes, label escaping, `# EOF`. Counter families are given to it without
//! their `_total` suffix: OpenMetrics writes `# TYPE translator_packets counter` with samples
//! `translator_packets_total{...}`, the 0.0.4 encoder writes `# TYPE translator_packets_total
//! counter`; the sample names are the same in both.

use std::sync::Arc;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};
use translator_common::counters::Event;

use super::Snapshot;

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// The Prometheus text exposition format, version 0.0.4 (the default).
    #[default]
    Prometheus,
    /// OpenMetrics 1.0.0 text (ends with `# EOF`).
    OpenMetrics,
}

/// The media type of OpenMetrics text, without parameters.
const OPENMETRICS: &str = "application/openmetrics-text";

impl Format {
    /// The `Content-Type` of a response in this format.
    pub const fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format to answer with, from the values of the request's `Accept` headers.
    ///
    /// OpenMetrics when the header ranks it above the 0.0.4 text format, as Prometheus does
    /// (`application/openmetrics-text;version=1.0.0;q=0.5,...,text/plain;version=0.0.4;q=0.3`);
    /// the text format otherwise, also when the header accepts neither (curl without `-H`, a
    /// browser, `Accept: application/json`), the way Prometheus' Go client falls back to it.
    ///
    /// Each format's quality is that of the most specific range that matches it (RFC 9110
    /// 12.5.1): `application/openmetrics-text` with `version=1.0.0` or no version,
    /// `application/*`, `text/plain` with `version=0.0.4` or no version, `text/*`, `*/*`. A
    /// range that asks for another version (`text/plain;version=1.0.0`, OpenMetrics 0.0.1)
    /// matches neither; parameters other than `version` and `q` are ignored.
    pub fn negotiate<'a>(accept: impl IntoIterator<Item = &'a str>) -> Self {
        // (specificity, quality) of the range deciding each format; specificity 0 is `*/*`.
        let mut text: Option<(u8, f32)> = None;
        let mut open: Option<(u8, f32)> = None;
        for range in accept.into_iter().flat_map(|h| h.split(',')) {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let (mut q, mut version) = (Some(1.0f32), None);
            for p in parts {
                let Some((k, v)) = p.split_once('=') else {
                    continue;
                };
                let v = v.trim().trim_matches('"');
                match k.trim().to_ascii_lowercase().as_str() {
                    "q" => q = v.parse().ok().filter(|q| (0.0..=1.0).contains(q)),
                    "version" => version = Some(v.to_owned()),
                    _ => {}
                }
            }
            // A malformed quality makes the whole range meaningless.
            let Some(q) = q else { continue };
            let versioned = u8::from(version.is_some());
            let (t, o) = match media.as_str() {
                "*/*" => (Some(0), Some(0)),
                "text/*" => (Some(1), None),
                "application/*" => (None, Some(1)),
                "text/plain" if version.as_deref().is_none_or(|v| v == "0.0.4") => {
                    (Some(2 + versioned), None)
                }
                OPENMETRICS if version.as_deref().is_none_or(|v| v == "1.0.0") => {
                    (None, Some(2 + versioned))
                }
                _ => (None, None),
            };
            for (slot, specificity) in [(&mut text, t), (&mut open, o)] {
                if let Some(s) = specificity
                    && slot.is_none_or(|(best, _)| s > best)
                {
                    *slot = Some((s, q));
                }
            }
        }
        let quality = |f: Option<(u8, f32)>| f.map_or(0.0, |(_, q)| q);
        if quality(open) > quality(text) {
            Self::OpenMetrics
        } else {
            Self::Prometheus
        }
    }

    /// The snapshot in this format.
    pub fn encode(self, snapshot: Arc<Snapshot>) -> Result<String, std::fmt::Error> {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(snapshot));
        let mut out = String::with_capacity(8192);
        match self {
            Self::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?
            }
            Self::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry)?,
        }
        Ok(out)
    }
}

/// The snapshot in the Prometheus text format 0.0.4.
pub fn render(snapshot: &Snapshot) -> String {
    // Writing to a String cannot fail, and the collector below only passes the writer's
    // errors on.
    Format::Prometheus
        .encode(Arc::new(snapshot.clone()))
        .expect("encoding metrics into a String")
}

/// The label set of a family without labels.
const NO_LABELS: [(&str, &str); 0] = [];

/// One metric family: its descriptor, then one sample per label set.
fn family<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (L, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        let sample = metric.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(value).encode(sample)?,
            _ => ConstGauge::new(value).encode(sample)?,
        }
    }
    Ok(())
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let event = |x: Event| {
            self.events
                .iter()
                .find(|(e, _)| *e == x)
                .map_or(0, |(_, n)| *n)
        };
        family(
            &mut e,
            "translator_packets",
            "Packets translated by the data plane, by direction (hairpin: IPv6 client to IPv6 \
             client through a pool address).",
            MetricType::Counter,
            [
                ("6to4", Event::Translated6to4),
                ("4to6", Event::Translated4to6),
                ("hairpin", Event::Hairpinned),
            ]
            .map(|(dir, x)| ([("direction", dir)], event(x))),
        )?;
        family(
            &mut e,
            "translator_events",
            "Data-plane events, as `translator stats` lists them.",
            MetricType::Counter,
            self.events.iter().map(|(x, n)| ([("event", x.name())], *n)),
        )?;
        family(
            &mut e,
            "translator_drops",
            "Packets dropped by the data plane, by reason.",
            MetricType::Counter,
            self.drops.iter().map(|(r, n)| ([("reason", r.name())], *n)),
        )?;
        family(
            &mut e,
            "translator_sessions",
            "Sessions in the session table, by protocol and RFC 6146 state (as of the last \
             expiry pass: translator_gauges_age_seconds).",
            MetricType::Gauge,
            self.sessions
                .iter()
                .map(|(p, s, n)| ([("protocol", p.name()), ("state", s.name())], *n)),
        )?;
        family(
            &mut e,
            "translator_bindings",
            "Bindings (client address and port to pool address and port), static ones included.",
            MetricType::Gauge,
            [(NO_LABELS, self.bindings)],
        )?;
        family(
            &mut e,
            "translator_port_blocks_in_use",
            "Port blocks held by clients, by protocol.",
            MetricType::Gauge,
            self.blocks
                .iter()
                .map(|b| ([("protocol", b.protocol.name())], b.in_use)),
        )?;
        family(
            &mut e,
            "translator_port_blocks_total",
            "Port blocks in the pool, by protocol.",
            MetricType::Gauge,
            self.blocks
                .iter()
                .map(|b| ([("protocol", b.protocol.name())], b.total)),
        )?;
        {
            let mut metric = e.encode_descriptor(
                "translator_gauges_age_seconds",
                "Seconds since the controller's expiry pass counted translator_sessions, \
                 translator_bindings and translator_port_blocks_in_use (0: counted by this \
                 scrape).",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(self.gauges_age.as_secs_f64())
                .encode(metric.encode_family(&NO_LABELS)?)?;
        }
        for (name, help, section) in [
            (
                "translator_slow_path",
                "Packets and datagrams handled by the user-space slow path (reassembly, \
                 fragmentation), by counter.",
                &self.slow_path,
            ),
            (
                "translator_dns64",
                "DNS64 server counters (present when the server is enabled).",
                &self.dns64,
            ),
            (
                "translator_ra",
                "Router advertisement counters (present when [ra] is enabled).",
                &self.ra,
            ),
        ] {
            if let Some(counters) = section {
                family(
                    &mut e,
                    name,
                    help,
                    MetricType::Counter,
                    counters
                        .iter()
                        .map(|(k, n)| ([("counter", k.as_str())], *n)),
                )?;
            }
        }
        Ok(())
    }
}
